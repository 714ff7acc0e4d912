/* test_progcache.c -- compiled code shared within a process (cg_memo.c) and
 * the module compiled in parts on several threads (cg_split.c).
 *
 * Sharing: a second compile of the same model, bindings and kind while the
 * first program lives is a hit; the two programs hold independent weights,
 * inputs and optimizer state, give bit-identical results on equal weights,
 * and can be freed in either order; another binding or kind is a miss; the
 * table is empty once every program is gone.
 *
 * Parts: the same graph compiled in 1, 2 and 3 parts gives the same
 * optimised code for every function and bit-identical results. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/llvm/cg.h"
#include "lathe.h"
#include "runtime/program.h"
#include "tests/test.h"

static lathe_model *load(const char *path, int64_t batch) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(path, &err);
  CHECK_MSG(m != NULL, "%s", err.message ? err.message : "?");
  if (m) CHECK(lathe_model_bind(m, "batch", batch, &err) == 0);
  lathe_error_clear(&err);
  return m;
}

static lathe_program *compile(lathe_model *m, int train) {
  lathe_error err = {0};
  lathe_options o = {.backend = LATHE_BACKEND_LLVM};
  lathe_program *p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
  CHECK_MSG(p != NULL, "%s", err.message ? err.message : "?");
  lathe_error_clear(&err);
  return p;
}

static int hit(const lathe_program *p) {
  lathe_compile_stats st;
  return p && lathe_program_stats(p, &st) == 0 ? st.program_cache_hit : -1;
}

/* The mlp's inputs for batch 8: x and the labels y. */
static void set_mlp_inputs(lathe_program *p) {
  static float xs[8 * 64];
  static int32_t ys[8];
  for (int i = 0; i < 8 * 64; i++) xs[i] = (float)sin(0.37 * i);
  for (int i = 0; i < 8; i++) ys[i] = (i * 7) % 10;
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {8, 64}, .data = xs};
  lathe_tensor y = {.dtype = LATHE_I32, .rank = 1, .shape = {8}, .data = ys};
  lathe_error err = {0};
  CHECK(lathe_set_input(p, "x", &x, &err) == 0 && lathe_set_input(p, "y", &y, &err) == 0);
  lathe_error_clear(&err);
}

/* Run p and return a copy of output name (caller frees), NULL on failure. */
static float *run_output(lathe_program *p, const char *name, int64_t *n) {
  lathe_error err = {0};
  lathe_tensor t = {0};
  int ok = lathe_run(p, &err) == 0 && lathe_get_output(p, name, &t, &err) == 0;
  CHECK_MSG(ok, "%s", err.message ? err.message : "?");
  lathe_error_clear(&err);
  if (!ok) return NULL;
  *n = lathe_tensor_numel(&t);
  return t.data;
}

static int same_floats(const float *a, const float *b, int64_t n) {
  return a && b && memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static void copy_weights(lathe_program *from, lathe_program *to) {
  char path[] = "/tmp/lathe_progcacheXXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return;
  close(fd);
  lathe_error err = {0};
  CHECK(lathe_weights_save(from, path, &err) == 0 && lathe_weights_load(to, path, &err) == 0);
  lathe_error_clear(&err);
  unlink(path);
}

/* Forward programs: hit, independent weights, identical results on equal
 * weights, either free order, then a fresh compile gives the same again. */
static void test_forward(int free_first_first) {
  lathe_model *m = load("examples/mlp.nn", 8);
  if (!m) return;
  lathe_error err = {0};
  lathe_program *a = compile(m, 0), *b = compile(m, 0);
  if (!a || !b) {
    lathe_program_free(a), lathe_program_free(b), lathe_model_free(m);
    return;
  }
  CHECK(hit(a) == 0 && hit(b) == 1);
  lathe_compile_stats st;
  lathe_program_stats(b, &st);
  CHECK(st.opt_ms == 0 && st.codegen_ms == 0 && st.kernels > 0 && st.arena_bytes > 0);
  CHECK(lathe_weights_init(a, 1, &err) == 0 && lathe_weights_init(b, 2, &err) == 0);
  set_mlp_inputs(a), set_mlp_inputs(b);
  int64_t n = 0;
  float *pa = run_output(a, "probs", &n), *pb = run_output(b, "probs", &n);
  CHECK_MSG(pa && pb && !same_floats(pa, pb, n), "different weights must give different outputs");
  free(pb);
  copy_weights(a, b);
  pb = run_output(b, "probs", &n);
  CHECK_MSG(same_floats(pa, pb, n), "equal weights on shared code must give bit-identical outputs");
  free(pb);
  /* one goes; the other still runs the same */
  lathe_program **gone = free_first_first ? &a : &b, **kept = free_first_first ? &b : &a;
  lathe_program_free(*gone);
  *gone = NULL;
  CHECK(cg_memo_entries() == 1);
  float *pk = run_output(*kept, "probs", &n);
  CHECK(same_floats(pa, pk, n));
  free(pk);
  lathe_program_free(*kept);
  *kept = NULL;
  CHECK(cg_memo_entries() == 0);
  /* compiled afresh (nothing to share): the same results */
  lathe_program *c = compile(m, 0);
  CHECK(hit(c) == 0);
  if (c) {
    CHECK(lathe_weights_init(c, 1, &err) == 0);
    set_mlp_inputs(c);
    float *pc = run_output(c, "probs", &n);
    CHECK_MSG(same_floats(pa, pc, n), "a fresh compile must give the shared code's results");
    free(pc);
  }
  lathe_program_free(c);
  free(pa);
  lathe_error_clear(&err);
  lathe_model_free(m);
  CHECK(cg_memo_entries() == 0);
}

/* Training steps on shared code keep their own weights and optimizer state:
 * interleaved steps of two programs match step for step; another kind
 * (forward) and another binding are misses. */
static void test_train(void) {
  lathe_model *m = load("examples/mlp.nn", 8);
  if (!m) return;
  lathe_error err = {0};
  lathe_program *a = compile(m, 1), *b = compile(m, 1), *f = compile(m, 0);
  CHECK(hit(a) == 0 && hit(b) == 1 && hit(f) == 0);
  lathe_model_bind(m, "batch", 4, &err);
  lathe_program *other = compile(m, 1);
  CHECK(hit(other) == 0);
  lathe_program_free(other);
  if (a && b) {
    CHECK(lathe_weights_init(a, 3, &err) == 0 && lathe_weights_init(b, 3, &err) == 0);
    set_mlp_inputs(a), set_mlp_inputs(b);
    for (int s = 0; s < 3; s++) {
      int64_t n = 0;
      float *la = run_output(a, "loss", &n), *lb = run_output(b, "loss", &n);
      CHECK_MSG(la && lb && la[0] == lb[0], "step %d: %g vs %g", s, la ? la[0] : -1.0, lb ? lb[0] : -1.0);
      free(la), free(lb);
    }
    /* a trains on alone; b's weights stay where they were */
    int64_t n = 0;
    free(run_output(a, "loss", &n));
    lathe_tensor va, vb;
    CHECK(lathe_param_view(a, 0, &va) == 0 && lathe_param_view(b, 0, &vb) == 0);
    CHECK(!same_floats(va.data, vb.data, lathe_tensor_numel(&va)));
  }
  lathe_program_free(b);
  lathe_program_free(f);
  lathe_program_free(a);
  lathe_error_clear(&err);
  lathe_model_free(m);
  CHECK(cg_memo_entries() == 0);
}

/* ---- parts ---- */

/* Buffers for running a graph directly: every input filled in range. */
typedef struct {
  void **in, **par, **out;
  int nin, npar, nout;
} io_bufs;

static void io_init(io_bufs *io, const ir_graph *g) {
  io->nin = g->ninputs, io->npar = g->nparams, io->nout = g->noutputs;
  io->in = calloc((size_t)io->nin + 1, sizeof(void *));
  io->par = calloc((size_t)io->npar + 1, sizeof(void *));
  io->out = calloc((size_t)io->nout + 1, sizeof(void *));
  for (int i = 0; i < g->ninputs; i++) {
    const ir_input *x = &g->inputs[i];
    int64_t n = ir_numel(&x->shape);
    io->in[i] = calloc((size_t)n + 1, 8);
    for (int64_t e = 0; e < n; e++) {
      if (x->dtype == IR_F32) ((float *)io->in[i])[e] = 0.25f + 0.125f * (float)(e % 3);
      else if (x->dtype == IR_I64) ((int64_t *)io->in[i])[e] = 1;
      else ((int32_t *)io->in[i])[e] = (int32_t)((e * 7) % 10);
    }
  }
  for (int j = 0; j < g->nparams; j++) {
    io->par[j] = calloc((size_t)ir_numel(&g->params[j].shape) + 1, sizeof(float));
    ir_param_init_values(&g->params[j], 5, io->par[j]);
  }
  for (int k = 0; k < g->noutputs; k++) {
    const ir_node *n = &g->nodes[g->outputs[k].node];
    io->out[k] = calloc((size_t)ir_numel(&n->shape) + 1, ir_dtype_size(n->dtype));
  }
}

static void io_free(io_bufs *io) {
  for (int i = 0; i < io->nin; i++) free(io->in[i]);
  for (int j = 0; j < io->npar; j++) free(io->par[j]);
  for (int k = 0; k < io->nout; k++) free(io->out[k]);
  free(io->in), free(io->par), free(io->out);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.'; }

/* Function text with what is local to one module's numbering blanked: the
 * numbers of attribute groups (#N) and metadata (!N), and the digits that
 * make value names unique (%exitcond25.not -> %exitcond.not). */
static char *normalise(const char *p, size_t len) {
  char *s = malloc(len + 1), *w = s;
  for (size_t i = 0; i < len; i++) {
    char c = p[i];
    if (i > 0 && p[i - 1] == '\n' && is_name(c)) { /* a block label: "vector.body20:" */
      size_t e = i;
      while (e < len && is_name(p[e])) e++;
      if (e < len && p[e] == ':') {
        for (; i < e; i++)
          if (!is_digit(p[i])) *w++ = p[i];
        c = p[i];
      }
    }
    *w++ = c;
    if ((c == '#' || c == '!') && i + 1 < len && is_digit(p[i + 1])) {
      while (i + 1 < len && is_digit(p[i + 1])) i++;
    } else if (c == '%' && i + 1 < len && is_name(p[i + 1]) && !is_digit(p[i + 1])) {
      for (i++; i < len && is_name(p[i]); i++)
        if (!is_digit(p[i])) *w++ = p[i];
      i--;
    }
  }
  *w = '\0';
  return s;
}

/* The optimised functions of a module text, normalised. Returns how many
 * (at most max). */
static int functions_of(const char *ir, char **fn, int max) {
  int n = 0;
  for (const char *p = strstr(ir, "\ndefine "); p && n < max; p = strstr(p + 1, "\ndefine ")) {
    const char *end = strstr(p, "\n}\n"), *eol = strchr(p + 1, '\n'), *entry = strstr(p, "@lathe_forward(");
    if (!end) break;
    /* Not the entry: where a kernel is in its module, dead-argument
     * elimination passes undef for the arguments the kernel never reads. */
    if (!entry || entry > eol) fn[n++] = normalise(p, (size_t)(end - p) + 3);
  }
  return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Compile g in `parts` parts (no caches, text kept), run it once. */
static cg_program *compile_parts(const ir_graph *g, int parts, io_bufs *io, int *nfn, char **fn, int max) {
  cg_options o = {.opt_level = 2, .threads = parts, .keep_ir = 1, .no_cache = 1};
  char msg[512];
  cg_program *p = cg_compile(g, &o, msg, sizeof msg);
  CHECK_MSG(p != NULL, "%s", msg);
  if (!p) return NULL;
  cg_stats st;
  cg_get_stats(p, &st);
  CHECK_MSG(st.parts == parts, "asked for %d parts, got %d", parts, st.parts);
  char *ir = cg_module_text(p);
  *nfn = ir ? functions_of(ir, fn, max) : 0;
  qsort(fn, (size_t)*nfn, sizeof *fn, cmp_str);
  free(ir);
  float loss = 0;
  CHECK_MSG(cg_run(p, io->in, io->par, io->out, &loss, msg, sizeof msg) == 0, "%s", msg);
  return p;
}

/* Every output of a run, bit for bit. */
static int same_outputs(const ir_graph *g, const io_bufs *x, const io_bufs *y) {
  for (int k = 0; k < g->noutputs; k++) {
    const ir_node *n = &g->nodes[g->outputs[k].node];
    if (memcmp(x->out[k], y->out[k], (size_t)ir_numel(&n->shape) * ir_dtype_size(n->dtype))) return 0;
  }
  return 1;
}

enum { MAXFN = 4096 };

static void test_parts(const char *path, int64_t batch, int maxparts) {
  lathe_model *m = load(path, batch);
  lathe_program *t = m ? compile(m, 1) : NULL; /* a training step: the graph */
  if (!t) {
    lathe_model_free(m);
    return;
  }
  io_bufs io1, ion;
  io_init(&io1, &t->g);
  char **fn1 = calloc(MAXFN, sizeof *fn1), **fnn = calloc(MAXFN, sizeof *fnn);
  int n1 = 0, nn = 0;
  cg_program *p1 = compile_parts(&t->g, 1, &io1, &n1, fn1, MAXFN);
  CHECK(n1 > 20);
  for (int parts = 2; p1 && parts <= maxparts; parts++) {
    io_init(&ion, &t->g);
    cg_program *pn = compile_parts(&t->g, parts, &ion, &nn, fnn, MAXFN);
    CHECK_MSG(same_outputs(&t->g, &io1, &ion), "%s: %d parts: outputs differ from one part's", path, parts);
    CHECK_MSG(nn == n1, "%s: %d functions in %d parts, %d in one", path, nn, parts, n1);
    int differ = 0;
    for (int i = 0; i < nn && i < n1; i++) {
      if (strcmp(fn1[i], fnn[i]) && !differ++)
        fprintf(stderr, "%s: %d parts: function differs:\n%.300s\n-- one part --\n%.300s\n", path, parts, fnn[i], fn1[i]);
    }
    CHECK_MSG(differ == 0, "%s: %d of %d functions differ in %d parts", path, differ, nn, parts);
    for (int i = 0; i < nn; i++) free(fnn[i]);
    cg_free(pn);
    io_free(&ion);
  }
  for (int i = 0; i < n1; i++) free(fn1[i]);
  free(fn1), free(fnn);
  cg_free(p1);
  io_free(&io1);
  lathe_program_free(t);
  lathe_model_free(m);
}

/* The on-disk cache has an entry per part: a second compile finds them all.
 * (A cache of its own: other tests stored this module's parts already.) */
static void test_parts_cached(const char *dir) {
  lathe_model *m = load("examples/mlp.nn", 8);
  lathe_program *t = m ? compile(m, 1) : NULL;
  if (!t) {
    lathe_model_free(m);
    return;
  }
  char own[256];
  snprintf(own, sizeof own, "%s/parts", dir);
  setenv("LATHE_CACHE_DIR", own, 1);
  for (int round = 0; round < 2; round++) {
    cg_options o = {.opt_level = 2, .threads = 2};
    char msg[512];
    cg_program *p = cg_compile(&t->g, &o, msg, sizeof msg);
    CHECK_MSG(p != NULL, "%s", msg);
    if (!p) break;
    cg_stats st;
    cg_get_stats(p, &st);
    CHECK_MSG(st.parts == 2 && st.cache_hit == round && !st.shared, "round %d: parts %d, cache_hit %d, shared %d",
              round, st.parts, st.cache_hit, st.shared);
    cg_free(p);
  }
  setenv("LATHE_CACHE_DIR", dir, 1);
  lathe_program_free(t);
  lathe_model_free(m);
}

int main(void) {
  char dir[] = "/tmp/lathe_pc_testXXXXXX"; /* never the user's cache */
  if (mkdtemp(dir)) setenv("LATHE_CACHE_DIR", dir, 1);
  test_forward(1);
  test_forward(0);
  test_train();
  test_parts_cached(dir);
  test_parts("examples/cnn.nn", 8, 3);
  test_parts("examples/gpt.nn", 2, 2);
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0) printf("could not remove %s\n", dir);
  return TEST_REPORT();
}
