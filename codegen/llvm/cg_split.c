/* cg_split.c -- the finished module becomes object files, on several threads.
 *
 * Optimising and generating code for a training step's module takes about a
 * second on one core, nearly all of it spent on kernels that do not depend
 * on each other. So the module is split: each kernel (a function the entry
 * `lathe_forward` calls), with the functions only it refers to (its outlined
 * parallel bodies), is a group; groups go to N parts, costliest first, each
 * to the part with the least cost so far (cost_of). The module is written
 * once as bitcode; a part that must be compiled parses it into its own
 * LLVMContext (a context is not thread-safe), turns the functions of other
 * parts into declarations, and is optimised and compiled on a thread of its
 * own with its own target machine; the first such part is cut from the
 * caller's module instead, on the caller's thread. The JIT (cg_jit.c) links
 * the objects on one thread; the entry reaches kernels in other parts by
 * their external names.
 *
 * Same code however the module is split: kernels are marked noinline and
 * made external in every build, split or not, so each is optimised as a
 * function of its own. (Inlined, a thousand kernel calls made the entry one
 * huge function that took 85% of the compile and that no second thread
 * could share.) The entry, loads and calls, is not optimised (mark_entry).
 *
 * Small modules stay one part on the calling thread: below SPLIT_MIN_KERNELS
 * kernels or twice SPLIT_PART_COST, a thread and a bitcode round trip cost
 * more than they save. The object cache has an entry per part, keyed by the whole
 * module's bitcode, the target and the part, so a second compile of the same
 * module finds every part without parsing or printing anything. */
#include "cg_split.h"

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_internal.h"
#include "cg_llvm_compat.h" /* CG_LLVM_VERSION: part of the cache key */
#include "rt/threadpool.h"

/* A part costs a bitcode parse of the whole module and a pipeline set-up
 * (10-20 ms on the char-GPT step); it is worth a thread when it has at least
 * SPLIT_PART_COST of work (cost_of: about 0.05 ms each, so 100 ms). */
enum { SPLIT_MIN_KERNELS = 20, SPLIT_PART_COST = 2000, SPLIT_MAX_PARTS = 16 };

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- the plan: which part defines each function ---- */

typedef struct {
  int n;        /* functions, defined or declared, in module order */
  char **name;  /* per function */
  int *part;    /* per function: the part that defines it; -1: a declaration */
  char *root;   /* per function: a kernel (external, called by the entry) */
  int nparts;
} split_plan;

/* The functions of a module with a pointer -> index table, a union-find of
 * the groups and the instruction count of each. */
typedef struct {
  LLVMValueRef *fn;
  int n;
  LLVMValueRef *key; /* open addressing; cap a power of two */
  int *val;
  size_t cap;
  int *up;
  int64_t *size; /* cost_of each */
} fn_table;

static size_t ptr_hash(LLVMValueRef f, size_t cap) { return ((uintptr_t)f >> 4) * 2654435761u & (cap - 1); }

static int ft_index(const fn_table *t, LLVMValueRef f) {
  for (size_t h = ptr_hash(f, t->cap); t->key[h]; h = (h + 1) & (t->cap - 1))
    if (t->key[h] == f) return t->val[h];
  return -1;
}

static int uf_find(int *up, int i) {
  while (up[i] != i) i = up[i] = up[up[i]];
  return i;
}

static void uf_join(int *up, int a, int b) {
  a = uf_find(up, a), b = uf_find(up, b);
  if (a != b) up[a > b ? a : b] = a < b ? a : b; /* the smaller index leads: deterministic */
}

/* What optimising and compiling f costs, roughly: its instructions, and ten
 * per basic block, since loops (vectorised, unrolled) cost far more than
 * their size. Fitted on the char-GPT training step; the entry, straight-line
 * and not optimised, costs about 3/8 per instruction (make_plan). */
static int64_t cost_of(LLVMValueRef f) {
  int64_t n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b)) {
    n += 10;
    for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) n++;
  }
  return n;
}

static int ft_init(fn_table *t, LLVMModuleRef M) {
  memset(t, 0, sizeof *t);
  for (LLVMValueRef f = LLVMGetFirstFunction(M); f; f = LLVMGetNextFunction(f)) t->n++;
  t->cap = 16;
  while (t->cap < (size_t)t->n * 2) t->cap *= 2;
  t->fn = calloc((size_t)t->n + 1, sizeof *t->fn);
  t->key = calloc(t->cap, sizeof *t->key);
  t->val = calloc(t->cap, sizeof *t->val);
  t->up = calloc((size_t)t->n + 1, sizeof *t->up);
  t->size = calloc((size_t)t->n + 1, sizeof *t->size);
  if (!t->fn || !t->key || !t->val || !t->up || !t->size) return -1;
  int i = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(M); f; f = LLVMGetNextFunction(f), i++) {
    t->fn[i] = f;
    t->up[i] = i;
    t->size[i] = LLVMIsDeclaration(f) ? 0 : cost_of(f);
    size_t h = ptr_hash(f, t->cap);
    while (t->key[h]) h = (h + 1) & (t->cap - 1);
    t->key[h] = f, t->val[h] = i;
  }
  return 0;
}

static void ft_free(fn_table *t) {
  free(t->fn), free(t->key), free(t->val), free(t->up), free(t->size);
}

/* A constant that may wrap a function's address (a cast of it, an array of
 * pointers): looked into, a few levels deep. */
static int wraps_values(LLVMValueRef v) {
  return LLVMIsAConstantExpr(v) || LLVMIsAConstantArray(v) || LLVMIsAConstantStruct(v) || LLVMIsAConstantVector(v);
}

/* Join `from` with every defined function value v refers to, except the
 * kernels when `from` is the entry (those calls are what the split cuts). */
static void join_refs(fn_table *t, const char *root, int from, int entry, LLVMValueRef v, int depth) {
  if (LLVMIsAFunction(v)) {
    int j = ft_index(t, v);
    if (j >= 0 && !LLVMIsDeclaration(v) && !(from == entry && root[j])) uf_join(t->up, from, j);
  } else if (depth < 4 && wraps_values(v)) {
    for (int k = 0; k < LLVMGetNumOperands(v); k++) join_refs(t, root, from, entry, LLVMGetOperand(v, k), depth + 1);
  }
}

static void join_function(fn_table *t, const char *root, int i, int entry) {
  LLVMValueRef f = t->fn[i];
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef in = LLVMGetFirstInstruction(b); in; in = LLVMGetNextInstruction(in))
      for (int k = 0; k < LLVMGetNumOperands(in); k++) join_refs(t, root, i, entry, LLVMGetOperand(in, k), 0);
}

static void add_attr(LLVMValueRef f, const char *name) {
  LLVMContextRef C = LLVMGetModuleContext(LLVMGetGlobalParent(f));
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(C, kind, 0));
}

/* The entry is a thousand loads and calls in one block: optimising it gains
 * nothing measurable (a 2.7 us mlp step ran as fast) and cost 40% of the
 * char-GPT training step's compile, so it is compiled as is. */
static void mark_entry(fn_table *t, int entry) {
  add_attr(t->fn[entry], "noinline"); /* optnone requires it */
  add_attr(t->fn[entry], "optnone");
  t->size[entry] = t->size[entry] * 3 / 8;
}

/* The kernels: defined functions the entry calls. Each is made noinline and
 * external (see the top of the file). Returns how many. */
static int mark_kernels(fn_table *t, char *root, int entry) {
  int n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(t->fn[entry]); b; b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef in = LLVMGetFirstInstruction(b); in; in = LLVMGetNextInstruction(in)) {
      if (!LLVMIsACallInst(in)) continue;
      LLVMValueRef f = LLVMGetCalledValue(in);
      int j = LLVMIsAFunction(f) ? ft_index(t, f) : -1;
      if (j < 0 || j == entry || LLVMIsDeclaration(f) || root[j]) continue;
      root[j] = 1;
      n++;
      add_attr(f, "noinline");
      LLVMSetLinkage(f, LLVMExternalLinkage);
    }
  return n;
}

static int has_defined_globals(LLVMModuleRef M) {
  for (LLVMValueRef g = LLVMGetFirstGlobal(M); g; g = LLVMGetNextGlobal(g))
    if (!LLVMIsDeclaration(g)) return 1;
  return 0;
}

static int parts_wanted(const cg_target *t, int nkernels, int64_t total) {
  if (t->parts > 0) return t->parts;
  if (nkernels < SPLIT_MIN_KERNELS || !LLVMIsMultithreaded()) return 1;
  int64_t by_cost = total / SPLIT_PART_COST;
  int pool = rt_pool_size();
  return by_cost < pool ? (by_cost > 1 ? (int)by_cost : 1) : pool;
}

typedef struct {
  int64_t size;
  int lead;
} split_group;

static int group_cmp(const void *a, const void *b) {
  const split_group *x = a, *y = b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return x->lead - y->lead;
}

/* Deal the groups to nparts parts: costliest first, each to the cheapest
 * part so far (deterministic: ties go by position). */
static int assign_parts(fn_table *t, split_plan *p, int nparts) {
  split_group *g = calloc((size_t)t->n + 1, sizeof *g);
  int64_t *load = calloc((size_t)nparts, sizeof *load);
  int *part_of_lead = calloc((size_t)t->n + 1, sizeof *part_of_lead);
  if (!g || !load || !part_of_lead) {
    free(g), free(load), free(part_of_lead);
    return -1;
  }
  int ng = 0;
  for (int i = 0; i < t->n; i++) /* a group's index, kept at its lead for now */
    if (!LLVMIsDeclaration(t->fn[i]) && uf_find(t->up, i) == i) g[ng].lead = i, part_of_lead[i] = ng++;
  for (int i = 0; i < t->n; i++)
    if (!LLVMIsDeclaration(t->fn[i])) g[part_of_lead[uf_find(t->up, i)]].size += t->size[i] + 1;
  qsort(g, (size_t)ng, sizeof *g, group_cmp);
  if (nparts > ng) nparts = ng > 0 ? ng : 1;
  for (int k = 0; k < ng; k++) {
    int best = 0;
    for (int q = 1; q < nparts; q++)
      if (load[q] < load[best]) best = q;
    load[best] += g[k].size;
    part_of_lead[g[k].lead] = best;
  }
  for (int i = 0; i < t->n; i++) p->part[i] = LLVMIsDeclaration(t->fn[i]) ? -1 : part_of_lead[uf_find(t->up, i)];
  p->nparts = nparts;
  free(g), free(load), free(part_of_lead);
  return 0;
}

static void plan_free(split_plan *p) {
  for (int i = 0; p->name && i < p->n; i++) free(p->name[i]);
  free(p->name), free(p->part), free(p->root);
  memset(p, 0, sizeof *p);
}

static int plan_names(split_plan *p, const fn_table *t) {
  for (int i = 0; i < t->n; i++) {
    size_t len = 0;
    const char *s = LLVMGetValueName2(t->fn[i], &len);
    p->name[i] = strndup(s ? s : "", len);
    if (!p->name[i]) return -1;
  }
  return 0;
}

/* Mark the kernels and decide the parts. -1 when out of memory. */
static int make_plan(LLVMModuleRef M, const cg_target *tg, split_plan *p) {
  fn_table t;
  memset(p, 0, sizeof *p);
  int rc = ft_init(&t, M);
  p->n = t.n;
  p->nparts = 1;
  p->name = calloc((size_t)t.n + 1, sizeof *p->name);
  p->part = calloc((size_t)t.n + 1, sizeof *p->part);
  p->root = calloc((size_t)t.n + 1, 1);
  LLVMValueRef e = LLVMGetNamedFunction(M, tg->entry ? tg->entry : "lathe_forward");
  int entry = e ? ft_index(&t, e) : -1;
  if (rc || !p->name || !p->part || !p->root || entry < 0) {
    ft_free(&t);
    return rc || entry >= 0 ? -1 : 0; /* no entry: nothing to split (one part) */
  }
  int nkernels = mark_kernels(&t, p->root, entry);
  mark_entry(&t, entry);
  int64_t total = 0;
  for (int i = 0; i < t.n; i++) {
    total += t.size[i];
    if (!LLVMIsDeclaration(t.fn[i])) join_function(&t, p->root, i, entry);
  }
  int want = parts_wanted(tg, nkernels, total);
  if (want > SPLIT_MAX_PARTS) want = SPLIT_MAX_PARTS;
  if (want > 1 && !has_defined_globals(M)) rc = assign_parts(&t, p, want);
  if (rc == 0 && p->nparts > 1) rc = plan_names(p, &t);
  ft_free(&t);
  return rc;
}

/* ---- one part: parse, cut, optimise, generate ---- */

typedef struct {
  const cg_target *t;
  const split_plan *plan;
  int part, nparts;
  LLVMModuleRef M;            /* compiled in place (the caller's module, taken), or NULL: */
  const char *bc;             /* parsed from this bitcode; NULL for a part the cache had */
  size_t bclen;
  char key[CG_KEYLEN];        /* its cache entry; "" when the cache is not used */
  LLVMMemoryBufferRef obj;    /* out */
  char *ir_text;
  double prep_ms, opt_ms, codegen_ms;
  int hit, rc;
  char msg[512];
} part_job;

static int job_fail(part_job *j, const char *fmt, const char *what) {
  snprintf(j->msg, sizeof j->msg, fmt, what ? what : "?");
  return j->rc = -1;
}

static int llvm_error(part_job *j, LLVMErrorRef e, const char *fmt) {
  char *s = LLVMGetErrorMessage(e);
  job_fail(j, fmt, s);
  LLVMDisposeErrorMessage(s);
  return -1;
}

/* A declaration in place of f (same name and type); f is deleted. */
static LLVMValueRef to_declaration(LLVMModuleRef M, LLVMValueRef f) {
  size_t len = 0;
  const char *s = LLVMGetValueName2(f, &len);
  char *name = strndup(s ? s : "", len);
  LLVMSetValueName2(f, "", 0); /* frees the name for the declaration */
  LLVMValueRef d = LLVMAddFunction(M, name ? name : "", LLVMGlobalGetValueType(f));
  free(name);
  LLVMReplaceAllUsesWith(f, d);
  LLVMDeleteFunction(f);
  return d;
}

static int same_name(LLVMValueRef f, const char *want) {
  size_t len = 0;
  const char *s = LLVMGetValueName2(f, &len);
  return s && strlen(want) == len && memcmp(s, want, len) == 0;
}

/* Whether v is used by an instruction, directly or through constants. */
static int live_use(LLVMValueRef v, int depth) {
  for (LLVMUseRef u = LLVMGetFirstUse(v); u; u = LLVMGetNextUse(u)) {
    LLVMValueRef user = LLVMGetUser(u);
    if (LLVMIsAInstruction(user) || (depth < 4 && LLVMIsAConstant(user) && live_use(user, depth + 1))) return 1;
  }
  return 0;
}

/* Keep the functions of this part; every other definition becomes a
 * declaration (a kernel the entry calls) or goes (unused here). */
static int cut_part(part_job *j, LLVMModuleRef M) {
  const split_plan *p = j->plan;
  LLVMValueRef *fn = calloc((size_t)p->n + 1, sizeof *fn);
  if (!fn) return job_fail(j, "llvm backend: %s", "out of memory");
  int i = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(M); f && i <= p->n; f = LLVMGetNextFunction(f), i++)
    if (i < p->n) fn[i] = f;
  for (int k = 0; k < p->n && i == p->n; k++)
    if (!same_name(fn[k], p->name[k])) i = -1;
  if (i != p->n) {
    free(fn);
    return job_fail(j, "llvm backend: internal error: %s", "the parsed part does not list the module's functions");
  }
  for (int k = 0; k < p->n; k++)
    if (p->part[k] >= 0 && p->part[k] != j->part) fn[k] = to_declaration(M, fn[k]);
  int bad = -1;
  for (int k = 0; k < p->n; k++) {
    if (p->part[k] < 0 || p->part[k] == j->part) continue;
    if (live_use(fn[k], 0)) {
      if (!p->root[k] && bad < 0) bad = k; /* only kernels are reached across parts */
      continue;
    }
    /* Gone bodies leave constants (casts of the address) that still use it:
     * point them at null, so the function has no use when it is deleted. */
    LLVMReplaceAllUsesWith(fn[k], LLVMConstNull(LLVMTypeOf(fn[k])));
    LLVMDeleteFunction(fn[k]);
  }
  free(fn);
  if (bad >= 0) job_fail(j, "llvm backend: internal error: a part refers to another part's function '%s'", p->name[bad]);
  return j->rc;
}

static int parse_part(part_job *j, LLVMContextRef C, LLVMModuleRef *M) {
  LLVMMemoryBufferRef b = LLVMCreateMemoryBufferWithMemoryRange(j->bc, j->bclen, "lathe-part", 0);
  int bad = LLVMParseBitcodeInContext2(C, b, M);
  LLVMDisposeMemoryBuffer(b);
  if (bad) return job_fail(j, "llvm backend: internal error: %s", "cannot read back the module's bitcode");
  return cut_part(j, *M);
}

/* A target machine for the host (one per thread: they are not shared). */
static LLVMTargetMachineRef host_tm(const cg_target *t, char *msg, size_t msgn) {
  LLVMTargetRef T;
  char *e = NULL;
  if (LLVMGetTargetFromTriple(t->triple, &T, &e)) {
    ir_fail(msg, msgn, "llvm backend: no target for %s: %s", t->triple, e ? e : "?");
    LLVMDisposeMessage(e);
    return NULL;
  }
  int o = t->opt_level;
  LLVMCodeGenOptLevel lv = o <= 0 ? LLVMCodeGenLevelNone : o >= 3 ? LLVMCodeGenLevelAggressive : LLVMCodeGenLevelDefault;
  return LLVMCreateTargetMachine(T, t->triple, t->cpu, t->features, lv, t->pic ? LLVMRelocPIC : LLVMRelocDefault,
                                 t->pic ? LLVMCodeModelDefault : LLVMCodeModelJITDefault);
}

int cg_module_target(LLVMModuleRef M, const cg_target *t, char *msg, size_t msgn) {
  LLVMTargetMachineRef tm = host_tm(t, msg, msgn);
  if (!tm) return -1;
  LLVMSetTarget(M, t->triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(M, td);
  LLVMDisposeTargetData(td);
  LLVMDisposeTargetMachine(tm);
  return 0;
}

static int optimise(part_job *j, LLVMModuleRef M, LLVMTargetMachineRef tm) {
  double t0 = now_ms();
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(po, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
  char pipe[32];
  int o = j->t->opt_level;
  snprintf(pipe, sizeof pipe, "default<O%d>", o < 0 ? 0 : o > 3 ? 3 : o);
  LLVMErrorRef e = LLVMRunPasses(M, pipe, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) return llvm_error(j, e, "llvm backend: optimisation: %s");
  j->opt_ms = now_ms() - t0;
  if (j->t->keep_ir) {
    char *s = LLVMPrintModuleToString(M);
    j->ir_text = s ? strdup(s) : NULL;
    LLVMDisposeMessage(s);
  }
  return 0;
}

static int emit_object(part_job *j, LLVMModuleRef M, LLVMTargetMachineRef tm) {
  double t0 = now_ms();
  char *e = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, M, LLVMObjectFile, &e, &j->obj)) {
    job_fail(j, "llvm backend: code generation: %s", e);
    LLVMDisposeMessage(e);
    j->obj = NULL;
    return -1;
  }
  j->codegen_ms = now_ms() - t0;
  return 0;
}

/* Optimise and generate M's object (and store it in the cache). */
static void compile_part(part_job *j, LLVMModuleRef M) {
  LLVMTargetMachineRef tm = host_tm(j->t, j->msg, sizeof j->msg);
  if (!tm) {
    j->rc = -1;
    return;
  }
  if (optimise(j, M, tm) == 0 && emit_object(j, M, tm) == 0 && j->key[0])
    cg_cache_store(j->key, LLVMGetBufferStart(j->obj), LLVMGetBufferSize(j->obj));
  LLVMDisposeTargetMachine(tm);
}

static void run_part(part_job *j) {
  double t0 = now_ms();
  LLVMContextRef C = NULL;
  LLVMModuleRef M = j->M;
  if (M) j->M = NULL; /* taken (only the caller's thread runs such a job) */
  if (!M) {
    C = LLVMContextCreate();
    parse_part(j, C, &M);
  } else if (j->nparts > 1) {
    cut_part(j, M);
  }
  j->prep_ms = now_ms() - t0;
  if (j->rc == 0) compile_part(j, M);
  if (M) LLVMDisposeModule(M);
  if (C) LLVMContextDispose(C);
}

static void *part_thread(void *arg) {
  run_part(arg);
  return NULL;
}

/* ---- all parts ---- */

static int pending(const part_job *j) { return j->M || j->bc; }

/* Run the pending jobs: the one on the caller's module here, the others on
 * threads of their own; a job whose thread cannot start runs here too. */
static void run_jobs(part_job *jobs, int n) {
  pthread_t *th = calloc((size_t)n, sizeof *th);
  char *started = calloc((size_t)n, 1);
  int threads = th && started && LLVMIsMultithreaded(); /* else one part after the other */
  pthread_attr_t attr;
  int have_attr = threads && pthread_attr_init(&attr) == 0;
  if (have_attr) pthread_attr_setstacksize(&attr, (size_t)16 << 20); /* LLVM recurses deeply */
  for (int i = 0; threads && i < n; i++)
    if (pending(&jobs[i]) && !jobs[i].M)
      started[i] = pthread_create(&th[i], have_attr ? &attr : NULL, part_thread, &jobs[i]) == 0;
  for (int i = 0; i < n; i++)
    if (jobs[i].M) run_part(&jobs[i]);
  for (int i = 0; i < n; i++) {
    if (started && started[i]) pthread_join(th[i], NULL);
    else if (pending(&jobs[i])) run_part(&jobs[i]);
  }
  if (have_attr) pthread_attr_destroy(&attr);
  free(th), free(started);
}

static char *join_texts(part_job *jobs, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++) len += (jobs[i].ir_text ? strlen(jobs[i].ir_text) : 0) + 64;
  char *s = malloc(len);
  if (!s) return NULL;
  size_t w = 0;
  s[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (n > 1) w += (size_t)snprintf(s + w, len - w, "; ---- part %d of %d ----\n", i + 1, n);
    if (jobs[i].ir_text) w += (size_t)snprintf(s + w, len - w, "%s", jobs[i].ir_text);
  }
  return s;
}

/* Collect the jobs' objects, texts and times into out (the times of the
 * part that took longest); the first error. */
static int gather(part_job *jobs, int n, cg_objects *out, char *msg, size_t msgn) {
  int rc = 0;
  double slowest = -1;
  for (int i = 0; i < n; i++) {
    part_job *j = &jobs[i];
    if (j->rc && !rc) rc = ir_fail(msg, msgn, "%s", j->msg);
    if (!j->rc && !j->obj && !rc) rc = ir_fail(msg, msgn, "llvm backend: internal error: part %d has no object", i);
    out->obj[i] = j->obj;
    out->hits += j->hit;
    double total = j->prep_ms + j->opt_ms + j->codegen_ms;
    if (total > slowest) {
      slowest = total;
      out->opt_ms = j->opt_ms, out->codegen_ms = j->codegen_ms;
      out->prep_ms = j->prep_ms;
    }
  }
  out->nobj = n;
  if (rc == 0 && jobs[0].t->keep_ir && !(out->ir_text = join_texts(jobs, n)))
    rc = ir_fail(msg, msgn, "llvm backend: out of memory");
  for (int i = 0; i < n; i++) free(jobs[i].ir_text);
  return rc;
}

/* Two independent 64-bit FNV-1a streams over the bytes, as hex. */
static void digest(const char *p, size_t n, char out[CG_KEYLEN]) {
  uint64_t a = 14695981039346656037ull, b = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < n; i++) {
    a = (a ^ (unsigned char)p[i]) * 1099511628211ull;
    b = (b ^ (unsigned char)p[i]) * 1099511628211ull;
  }
  snprintf(out, CG_KEYLEN, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

/* Each part's cache key: the whole module's bitcode (the split is a function
 * of it and of the number of parts), the target, the part; and each part
 * the cache has. */
static void look_up_parts(part_job *jobs, int n, LLVMMemoryBufferRef bc, const cg_target *t) {
  char whole[CG_KEYLEN], lv[48], which[32];
  digest(LLVMGetBufferStart(bc), LLVMGetBufferSize(bc), whole);
  snprintf(lv, sizeof lv, "O%d llvm %s", t->opt_level, CG_LLVM_VERSION);
  for (int i = 0; i < n; i++) {
    snprintf(which, sizeof which, "part %d of %d", i + 1, n);
    const char *parts[6] = {whole, t->triple, t->cpu, t->features, lv, which};
    cg_cache_key(parts, 6, jobs[i].key);
    size_t len = 0;
    void *data = cg_cache_load(jobs[i].key, &len);
    if (!data) continue;
    jobs[i].obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, len, "lathe-cached");
    jobs[i].hit = 1;
    free(data);
  }
}

/* Give the parts the cache did not have their source: the caller's module
 * to the first (cut in place: no parse), the bitcode to the others. */
static void assign_sources(part_job *jobs, int n, LLVMModuleRef *M, LLVMMemoryBufferRef bc) {
  for (int i = 0; i < n; i++) {
    if (jobs[i].obj) continue;
    if (*M) {
      jobs[i].M = *M;
      *M = NULL;
    } else {
      jobs[i].bc = LLVMGetBufferStart(bc);
      jobs[i].bclen = LLVMGetBufferSize(bc);
    }
  }
}

int cg_module_objects(LLVMModuleRef M, const cg_target *t, cg_objects *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  double t0 = now_ms();
  split_plan plan;
  int rc = make_plan(M, t, &plan);
  int n = plan.nparts;
  part_job *jobs = rc ? NULL : calloc((size_t)n, sizeof *jobs);
  out->obj = jobs ? calloc((size_t)n, sizeof *out->obj) : NULL;
  if (!out->obj) {
    free(jobs);
    plan_free(&plan);
    LLVMDisposeModule(M);
    return ir_fail(msg, msgn, "llvm backend: out of memory");
  }
  int use_cache = t->use_cache && !t->keep_ir;
  LLVMMemoryBufferRef bc = use_cache || n > 1 ? LLVMWriteBitcodeToMemoryBuffer(M) : NULL;
  for (int i = 0; i < n; i++) jobs[i].t = t, jobs[i].plan = &plan, jobs[i].part = i, jobs[i].nparts = n;
  if (use_cache) look_up_parts(jobs, n, bc, t);
  assign_sources(jobs, n, &M, bc);
  if (M) LLVMDisposeModule(M); /* every part was in the cache */
  double main_ms = now_ms() - t0;
  run_jobs(jobs, n);
  rc = gather(jobs, n, out, msg, msgn);
  out->prep_ms += main_ms;
  if (bc) LLVMDisposeMemoryBuffer(bc);
  free(jobs);
  plan_free(&plan);
  return rc;
}

void cg_objects_free(cg_objects *o) {
  for (int i = 0; o->obj && i < o->nobj; i++)
    if (o->obj[i]) LLVMDisposeMemoryBuffer(o->obj[i]);
  free(o->obj);
  free(o->ir_text);
  memset(o, 0, sizeof *o);
}
