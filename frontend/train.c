/* train.c -- the `train { key = value ... }` block: known keys, values of the
 * right kind and range, optimizers and schedules with their arguments. Every
 * value is a constant expression. The checker runs this for its errors; the
 * lowering runs it again to fill g->train. Fields the block does not set keep
 * the "unset" values of ir_graph_init. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "sema.h"

/* A number argument of an optimizer/schedule call, range-checked. */
typedef struct {
  const char *name;
  int range;          /* R_POS (> 0), R_NONNEG (>= 0), R_UNIT ([0, 1)), R_COUNT (int >= 1),
                         R_BOOL */
  size_t off;         /* offset of the double field in ir_train, or NOFF */
} fe_trainarg;
enum { R_POS, R_NONNEG, R_UNIT, R_COUNT, R_BOOL };

#define OFF(f) offsetof(ir_train, f)
#define NOFF ((size_t)-1)

typedef struct {
  const char *name;
  int kind;           /* ir_optkind or ir_schedkind */
  int nargs;
  fe_trainarg arg[5];
} fe_traincall;

static const fe_traincall optimizers[] = {
  {"sgd", IR_OPT_SGD, 3,
   {{"lr", R_POS, OFF(lr)}, {"momentum", R_UNIT, OFF(momentum)},
    {"nesterov", R_BOOL, NOFF}}},
  {"adam", IR_OPT_ADAM, 4,
   {{"lr", R_POS, OFF(lr)}, {"beta1", R_UNIT, OFF(beta1)},
    {"beta2", R_UNIT, OFF(beta2)}, {"eps", R_POS, OFF(eps)}}},
  {"adamw", IR_OPT_ADAMW, 5,
   {{"lr", R_POS, OFF(lr)}, {"beta1", R_UNIT, OFF(beta1)},
    {"beta2", R_UNIT, OFF(beta2)}, {"eps", R_POS, OFF(eps)},
    {"weight_decay", R_NONNEG, OFF(weight_decay)}}},
  {"rmsprop", IR_OPT_RMSPROP, 4,
   {{"lr", R_POS, OFF(lr)}, {"alpha", R_UNIT, OFF(alpha)},
    {"eps", R_POS, OFF(eps)}, {"momentum", R_UNIT, OFF(momentum)}}},
};

static const fe_traincall schedules[] = {
  {"constant", IR_SCHED_CONSTANT, 0, {{0}}},
  {"step", IR_SCHED_STEP, 2,
   {{"every", R_COUNT, OFF(sched_every)}, {"gamma", R_POS, OFF(sched_gamma)}}},
  {"cosine", IR_SCHED_COSINE, 2,
   {{"warmup", R_NONNEG, OFF(sched_warmup)}, {"min_lr", R_NONNEG, OFF(sched_min_lr)}}},
  {"exponential", IR_SCHED_EXPONENTIAL, 1, {{"gamma", R_POS, OFF(sched_gamma)}}},
};

/* Evaluate a setting's number, naming the setting when the value is not a
 * number at all (`epochs = "ten"`). */
static int setting_number(const char *key, const fe_expr *e, const fe_consts *c, fe_diag *d, fe_num *v) {
  static const char *what[] = {[EX_STR] = "a string", [EX_BOOL] = "a boolean", [EX_LIST] = "a list",
                               [EX_CALL] = "a call"};
  if (e->kind == EX_STR || e->kind == EX_BOOL || e->kind == EX_LIST || e->kind == EX_CALL) {
    fe_error(d, e->loc, "'%s' must be a number, got %s", key, what[e->kind]);
    return -1;
  }
  return fe_const_eval(e, c, d, v);
}

/* One named number/bool argument: evaluate, range-check, store. */
static int train_arg(const fe_trainarg *ta, const fe_expr *e, const fe_consts *c, fe_diag *d,
                     ir_train *t) {
  if (ta->range == R_BOOL) {
    if (e->kind != EX_BOOL) {
      fe_error(d, e->loc, "'%s' must be true or false", ta->name);
      return -1;
    }
    t->nesterov = e->num != 0;
    return 0;
  }
  fe_num v;
  if (setting_number(ta->name, e, c, d, &v)) return -1;
  static const char *want[] = {"a positive number", "a number >= 0", "a number in [0, 1)",
                               "a positive integer"};
  int ok = ta->range == R_POS ? v.f > 0
         : ta->range == R_NONNEG ? v.f >= 0
         : ta->range == R_UNIT ? v.f >= 0 && v.f < 1
         : v.is_int && v.i >= 1;
  if (ta->range == R_NONNEG && !strcmp(ta->name, "warmup")) ok = ok && v.is_int;
  if (!ok) {
    char b[64];
    fe_num_str(v, b, sizeof b);
    fe_error(d, e->loc, "'%s' must be %s, got %s", ta->name,
             !strcmp(ta->name, "warmup") ? "an integer >= 0" : want[ta->range], b);
    return -1;
  }
  if (ta->off != NOFF) *(double *)((char *)t + ta->off) = v.f;
  return 0;
}

static const fe_traincall *find_call(const fe_traincall *tab, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(tab[i].name, name) == 0) return &tab[i];
  return NULL;
}

/* `key = NAME` or `key = NAME(args)` where NAME is in tab. */
static const fe_traincall *train_call(const char *key, const fe_expr *e, const fe_traincall *tab,
                                      int n, const char *choices, const fe_consts *c, fe_diag *d,
                                      ir_train *t) {
  if (e->kind != EX_NAME && e->kind != EX_CALL) {
    fe_error(d, e->loc, "'%s' must be one of %s", key, choices);
    return NULL;
  }
  const fe_traincall *tc = find_call(tab, n, e->str);
  if (!tc) {
    fe_error(d, e->loc, "unknown %s '%s' (expected %s)", key, e->str, choices);
    return NULL;
  }
  if (e->kind == EX_NAME) return tc;
  int errs = 0, given[5] = {0};
  for (int i = 0; i < e->nitems; i++) {
    if (i >= tc->nargs) {
      fe_error(d, e->items[i]->loc, "'%s' takes at most %d argument%s", tc->name, tc->nargs,
               tc->nargs == 1 ? "" : "s");
      return NULL;
    }
    given[i] = 1;
    errs += train_arg(&tc->arg[i], e->items[i], c, d, t) != 0;
  }
  for (int i = 0; i < e->nnamed; i++) {
    const fe_namedarg *na = &e->named[i];
    int k = -1;
    for (int j = 0; j < tc->nargs; j++)
      if (strcmp(tc->arg[j].name, na->name) == 0) k = j;
    if (k < 0) {
      fe_error(d, na->loc, "'%s' has no argument named '%s'", tc->name, na->name);
      errs++;
    } else if (given[k]) {
      fe_error(d, na->loc, "argument '%s' of '%s' given twice", na->name, tc->name);
      errs++;
    } else {
      given[k] = 1;
      errs += train_arg(&tc->arg[k], na->value, c, d, t) != 0;
    }
  }
  if (tc->kind == IR_SCHED_STEP && tc == &schedules[1] && !given[0]) {
    fe_error(d, e->loc, "'step' needs argument 'every'");
    errs++;
  }
  if (tc == &schedules[3] && !given[0]) {
    fe_error(d, e->loc, "'exponential' needs argument 'gamma'");
    errs++;
  }
  return errs ? NULL : tc;
}

static int key_optimizer(const fe_namedarg *kv, const fe_consts *c, fe_diag *d, ir_train *t) {
  const fe_traincall *tc = train_call("optimizer", kv->value, optimizers, 4,
                                      "sgd, adam, adamw or rmsprop", c, d, t);
  if (!tc) return -1;
  t->opt = (ir_optkind)tc->kind;
  /* PyTorch refuses Nesterov without momentum: the update would silently be
   * plain SGD. Momentum may come later in the call, so check once it is read. */
  if (tc->kind == IR_OPT_SGD && t->nesterov > 0 && !(t->momentum > 0)) {
    const fe_expr *e = kv->value;
    ir_loc at = e->nitems > 2 ? e->items[2]->loc : e->loc;
    for (int i = 0; i < e->nnamed; i++)
      if (!strcmp(e->named[i].name, "nesterov")) at = e->named[i].loc;
    fe_error(d, at, "'sgd' with nesterov=true needs momentum > 0 (as PyTorch)");
    return -1;
  }
  return 0;
}

static int key_schedule(const fe_namedarg *kv, const fe_consts *c, fe_diag *d, ir_train *t) {
  const fe_traincall *tc = train_call("schedule", kv->value, schedules, 4,
                                      "constant, step, cosine or exponential", c, d, t);
  if (!tc) return -1;
  t->sched = (ir_schedkind)tc->kind;
  return 0;
}

/* init = xavier | he | normal(std) */
static int key_init(const fe_namedarg *kv, const fe_consts *c, fe_diag *d, ir_train *t) {
  static const fe_traincall inits[] = {
    {"xavier", IR_INIT_XAVIER, 0, {{0}}},
    {"he", IR_INIT_HE, 0, {{0}}},
    {"normal", IR_INIT_NORMAL, 1, {{"std", R_POS, OFF(init_std)}}},
  };
  const fe_traincall *tc = train_call("init", kv->value, inits, 3, "xavier, he or normal(std)", c, d, t);
  if (!tc) return -1;
  t->init_set = 1;
  t->init = (ir_init)tc->kind;
  if (tc->kind == IR_INIT_NORMAL && !(t->init_std > 0)) t->init_std = 0.02;
  return 0;
}

static int key_split(const fe_namedarg *kv, const fe_consts *c, fe_diag *d, ir_train *t) {
  const fe_expr *e = kv->value;
  if (e->kind != EX_LIST || e->nitems < 2 || e->nitems > 3) {
    fe_error(d, e->loc, "'split' must be a list of 2 or 3 fractions, like [0.8, 0.1, 0.1]");
    return -1;
  }
  double sum = 0, v[3];
  for (int i = 0; i < e->nitems; i++) {
    fe_num x;
    if (fe_const_eval(e->items[i], c, d, &x)) return -1;
    if (x.f < 0 || x.f > 1 || (i == 0 && x.f <= 0)) {
      fe_error(d, e->items[i]->loc, "split fraction must be in %s, got %g", i == 0 ? "(0, 1]" : "[0, 1]", x.f);
      return -1;
    }
    v[i] = x.f;
    sum += x.f;
  }
  if (fabs(sum - 1) > 1e-6) {
    fe_error(d, e->loc, "split fractions must sum to 1, got %g", sum);
    return -1;
  }
  t->nsplit = e->nitems;
  for (int i = 0; i < e->nitems; i++) t->split[i] = v[i];
  return 0;
}

/* Plain numbers: integer keys store into int64 fields, the rest into doubles. */
typedef struct {
  const char *key;
  int is_int;
  double lo;
  int open;      /* value must be > lo rather than >= lo */
  size_t off;
} fe_numkey;

static const fe_numkey numkeys[] = {
  {"epochs", 1, 1, 0, OFF(epochs)},      {"batch", 1, 1, 0, OFF(batch)},
  {"early_stop", 1, 1, 0, OFF(early_stop)}, {"seed", 1, 0, 0, OFF(seed)},
  {"l1", 0, 0, 0, OFF(l1)},              {"l2", 0, 0, 0, OFF(l2)},
  {"clip_norm", 0, 0, 1, OFF(clip_norm)}, {"grad_noise", 0, 0, 0, OFF(grad_noise)},
};

static int key_number(const fe_numkey *k, const fe_namedarg *kv, const fe_consts *c, fe_diag *d,
                      ir_train *t) {
  fe_num v;
  if (setting_number(k->key, kv->value, c, d, &v)) return -1;
  if (k->is_int && !v.is_int) {
    fe_error(d, kv->value->loc, "'%s' must be an integer", k->key);
    return -1;
  }
  if (v.f < k->lo || (k->open && v.f <= k->lo)) {
    char b[64];
    fe_num_str(v, b, sizeof b);
    fe_error(d, kv->value->loc, "'%s' must be %s %g, got %s", k->key, k->open ? "greater than" : "at least",
             k->lo, b);
    return -1;
  }
  if (k->is_int) *(int64_t *)((char *)t + k->off) = v.i;
  else *(double *)((char *)t + k->off) = v.f;
  return 0;
}

typedef int (*fe_keyfn)(const fe_namedarg *, const fe_consts *, fe_diag *, ir_train *);
static const struct { const char *key; fe_keyfn fn; } keyfns[] = {
  {"optimizer", key_optimizer}, {"schedule", key_schedule}, {"init", key_init}, {"split", key_split},
};

static int train_key(const fe_namedarg *kv, const fe_consts *c, fe_diag *d, ir_train *t) {
  for (size_t i = 0; i < sizeof keyfns / sizeof keyfns[0]; i++)
    if (strcmp(keyfns[i].key, kv->name) == 0) return keyfns[i].fn(kv, c, d, t);
  for (size_t i = 0; i < sizeof numkeys / sizeof numkeys[0]; i++)
    if (strcmp(numkeys[i].key, kv->name) == 0) return key_number(&numkeys[i], kv, c, d, t);
  fe_error(d, kv->loc,
           "unknown train setting '%s' (expected optimizer, schedule, epochs, batch, init, l1, l2, "
           "clip_norm, grad_noise, early_stop, split or seed)", kv->name);
  return -1;
}

int fe_train_eval(const fe_stmt *st, const fe_consts *c, fe_diag *d, ir_train *t) {
  int errs = 0;
  t->present = 1;
  for (int i = 0; i < st->nkv; i++) {
    const fe_namedarg *kv = &st->kv[i];
    int dup = 0;
    for (int j = 0; j < i; j++)
      if (strcmp(st->kv[j].name, kv->name) == 0) dup = 1;
    if (dup) {
      fe_error(d, kv->loc, "train setting '%s' given twice", kv->name);
      errs++;
      continue;
    }
    errs += train_key(kv, c, d, t) != 0;
  }
  return errs ? -1 : 0;
}
