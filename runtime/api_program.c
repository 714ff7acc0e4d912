/* api_program.c -- the public C API, part 2: compiled programs. Compiling
 * lowers the model with its bound dimensions to a static graph (verified);
 * weights are f32 buffers, one per parameter; running executes the graph on
 * the chosen backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "passes/optimizer.h"
#include "passes/stage.h"
#include "runtime/program.h"
#include "runtime/runtime.h"
#include "rt/threadpool.h"

const char *lathe_llvm_version(void) { return cg_llvm_version(); }

/* The native backends' output buffers (llvm and cuda): per output, in the
 * node's dtype. */
static int alloc_outbufs(lathe_program *p, lathe_error *err) {
  p->outbufs = calloc((size_t)p->g.noutputs + 1, sizeof *p->outbufs);
  if (!p->outbufs) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < p->g.noutputs; i++) {
    const ir_node *n = &p->g.nodes[p->g.outputs[i].node];
    p->outbufs[i] = calloc((size_t)ir_numel(&n->shape) + 1, ir_dtype_size(n->dtype));
    if (!p->outbufs[i]) return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  return 0;
}

/* Why: a page's first touch is a fault, which on a virtual machine costs
 * tens of microseconds; the digits MLP's first training step took 13 to 19
 * ms against 1.3 ms for the others, nearly all of it in the arena's and the
 * updates' first writes (about a tenth of 100 steps, in one process and in
 * every rank of a job alike). Writing zeros changes nothing a run sees: the
 * arena is written before it is read and the output buffers are already
 * zero (calloc). */
void api_prefault(lathe_program *p) {
  if (!p) return;
  if (p->cg) cg_prefault(p->cg);
  if (!p->outbufs || (!p->cg && !p->cux)) return;
  for (int i = 0; i < p->g.noutputs; i++) {
    const ir_node *n = &p->g.nodes[p->g.outputs[i].node];
    if (p->outbufs[i]) memset(p->outbufs[i], 0, ((size_t)ir_numel(&n->shape) + 1) * ir_dtype_size(n->dtype));
  }
}

static int compile_llvm(lathe_program *p, lathe_error *err) {
  char msg[1024];
  p->cg = cg_compile(&p->g, NULL, msg, sizeof msg);
  if (!p->cg) return api_fail(err, LATHE_EUSER, "%s", msg);
  return alloc_outbufs(p, err);
}

/* The cuda backend (codegen/cuda/cu_run.c): the plan rendered, compiled for
 * the driver's GPU and loaded; no driver or no GPU is one clear error. */
static int compile_cuda(lathe_program *p, lathe_error *err) {
  char msg[8192];
  p->cux = cu_exec_create(&p->g, NULL, p->opt.precision == LATHE_PRECISION_BF16, msg, sizeof msg);
  if (!p->cux) return api_fail(err, LATHE_EUSER, "%s", msg);
  return alloc_outbufs(p, err);
}

/* Lower the model with its bound dimensions (unbound ones take
 * o->default_dim) into a new program; no backend yet. */
lathe_program *api_program_lower(lathe_model *m, const lathe_options *o, lathe_error *err) {
  /* every program (run, a training step, evaluation, generation) comes here */
  if (o->precision == LATHE_PRECISION_BF16 && o->backend == LATHE_BACKEND_LLVM) {
    api_fail(err, LATHE_EUSER, "--precision bf16 is the CUDA backend's (--backend cuda); the llvm backend computes in f32");
    return NULL;
  }
  int nsyms = fe_num_syms(m->fe);
  int64_t vals[IR_MAXDIM * 8];
  if (nsyms > (int)(sizeof vals / sizeof vals[0])) {
    api_fail(err, LATHE_EUSER, "model declares %d symbolic dimensions; at most %d are supported", nsyms,
             (int)(sizeof vals / sizeof vals[0]));
    return NULL;
  }
  for (int i = 0; i < nsyms; i++) {
    vals[i] = m->vals[i] ? m->vals[i] : o->default_dim;
    if (vals[i] < 1) {
      const char *s = fe_sym_name(m->fe, i);
      api_fail(err, LATHE_EUSER,
               "symbolic dimension '%s' is not bound: give an input array or --bind %s=N", s, s);
      return NULL;
    }
  }
  lathe_program *p = calloc(1, sizeof *p);
  if (!p) { api_fail(err, LATHE_ENOMEM, "out of memory"); return NULL; }
  p->opt = *o;
  ar_init(&p->A);
  ir_graph_init(&p->g, &p->A, fe_model_name(m->fe));
  char *msg = NULL;
  if (fe_lower(m->fe, vals, &p->g, &msg) != 0) {
    api_fail_take(err, LATHE_EUSER, msg);
    lathe_program_free(p);
    return NULL;
  }
  p->g.quant = o->quant;
  /* before any gradient is taken: the mask is part of the training step */
  char mmsg[1024];
  if (o->masked && ps_mask(&p->g, mmsg, sizeof mmsg) < 0) {
    api_fail(err, LATHE_EINTERNAL, "internal error: %s", mmsg);
    lathe_program_free(p);
    return NULL;
  }
  return p;
}

/* Verify the (possibly transformed) graph, allocate the program's tables and
 * compile it for the backend. Frees p and returns -1 on failure. */
int api_program_finish(lathe_program *p, lathe_error *err) {
  char vmsg[1024];
  if (ir_verify(&p->g, vmsg, sizeof vmsg) != 0) {
    api_fail(err, LATHE_EINTERNAL, "internal error: the graph does not verify: %s", vmsg);
    lathe_program_free(p);
    return -1;
  }
  if (api_run_passes(p, err)) { /* the graph pipeline (passes/pipeline.c) */
    lathe_program_free(p);
    return -1;
  }
  if (ir_verify(&p->g, vmsg, sizeof vmsg) != 0) {
    api_fail(err, LATHE_EINTERNAL, "internal error: the graph does not verify after the passes: %s", vmsg);
    lathe_program_free(p);
    return -1;
  }
  const ir_graph *g = &p->g;
  p->params = calloc((size_t)g->nparams + 1, sizeof *p->params);
  p->in = calloc((size_t)g->ninputs + 1, sizeof *p->in);
  p->in_set = calloc((size_t)g->ninputs + 1, sizeof *p->in_set);
  p->bound = calloc((size_t)g->ninputs + 1, sizeof *p->bound);
  if (!p->params || !p->in || !p->in_set || !p->bound) {
    lathe_program_free(p);
    return api_fail(err, LATHE_ENOMEM, "out of memory allocating the program's tables");
  }
  p->weights_set = g->nparams == 0;
  if ((p->opt.backend == LATHE_BACKEND_LLVM && compile_llvm(p, err)) ||
      (p->opt.backend == LATHE_BACKEND_CUDA && compile_cuda(p, err))) {
    lathe_program_free(p);
    return -1;
  }
  return 0;
}

lathe_program *lathe_compile(lathe_model *m, const lathe_options *opt, lathe_error *err) {
  if (!m) { api_null(err, "lathe_compile", "the model"); return NULL; }
  if (api_check_options(err, "lathe_compile", opt)) return NULL;
  lathe_options o = {0};
  if (opt) o = *opt;
  lathe_program *p = api_program_lower(m, &o, err);
  if (!p || api_program_finish(p, err)) return NULL;
  return p;
}

static void release_vals(lathe_program *p) {
  if (!p->vals) return;
  /* ir_interp_release frees what the interpreter allocated; leaves are ours. */
  for (int i = 0; i < p->g.nnodes; i++) {
    int op = p->g.nodes[i].op;
    if (op == IR_INPUT || op == IR_PARAM) { free(p->vals[i]); p->vals[i] = NULL; }
  }
  ir_interp_release(&p->g, p->vals);
  free(p->vals);
  p->vals = NULL;
  p->ran = 0;
}

void lathe_program_free(lathe_program *p) {
  if (!p) return;
  release_vals(p);
  cg_free(p->cg);
  gpk_free(p->pack);
  cu_exec_free(p->cux);
  free(p->commit);
  if (p->outbufs)
    for (int i = 0; i < p->g.noutputs; i++) free(p->outbufs[i]);
  free(p->outbufs);
  if (p->params)
    for (int i = 0; i < p->g.nparams; i++) free(p->params[i]);
  if (p->in)
    for (int i = 0; i < p->g.ninputs; i++) free(p->in[i].data);
  free(p->params);
  free(p->in);
  free(p->in_set);
  free(p->bound);
  api_pre_free(p);
  ar_free(&p->A);
  free(p);
}

void lathe_program_print(const lathe_program *p, lathe_print_kind kind, FILE *f) {
  if (!p || !f || (int)kind < (int)LATHE_PRINT_SUMMARY || (int)kind > (int)LATHE_PRINT_DOT) return;
  if (kind == LATHE_PRINT_IR) ir_print(&p->g, f);
  else if (kind == LATHE_PRINT_DOT) ir_dot(&p->g, f);
  else ir_summary(&p->g, f);
}

/* A NULL program has -1 outputs and parameters and no loss; an index out
 * of range has no name. */
int lathe_num_outputs(const lathe_program *p) { return p ? p->g.noutputs : -1; }
const char *lathe_output_name(const lathe_program *p, int i) {
  return p && i >= 0 && i < p->g.noutputs ? p->g.outputs[i].name : NULL;
}
int lathe_has_loss(const lathe_program *p) { return p && p->g.loss >= 0; }
int lathe_num_params(const lathe_program *p) { return p ? p->g.nparams : -1; }
const char *lathe_param_name(const lathe_program *p, int i) {
  return p && i >= 0 && i < p->g.nparams ? p->g.params[i].name : NULL;
}

static void shape_to_tensor(const ir_shape *s, lathe_tensor *t) {
  t->rank = s->rank;
  for (int j = 0; j < s->rank; j++) t->shape[j] = s->d[j];
}

int lathe_param_view(const lathe_program *p, int i, lathe_tensor *view) {
  if (!view) return LATHE_EUSER;
  memset(view, 0, sizeof *view);
  if (!p || i < 0 || i >= p->g.nparams || !p->params || !p->params[i]) return LATHE_EUSER;
  view->dtype = p->g.params[i].stored ? (lathe_dtype)p->g.params[i].dtype : LATHE_F32;
  shape_to_tensor(&p->g.params[i].shape, view);
  view->data = p->params[i];
  api_params_changed(p); /* the runtime writes through views (checkpoints, evaluation copies) */
  return 0;
}

int lathe_program_stats(const lathe_program *p, lathe_compile_stats *st) {
  if (!st) return LATHE_EUSER;
  memset(st, 0, sizeof *st);
  if (!p) return LATHE_EUSER;
  if (p->cux) {
    cu_exec_stats c;
    cu_exec_get_stats(p->cux, &c);
    st->cuda_render_ms = c.render_ms, st->cuda_nvrtc_ms = c.nvrtc_ms;
    st->cuda_modules = c.modules, st->cuda_cache_hits = c.cache_hits;
    st->kernels = c.launches, st->kernels_unique = c.functions;
  }
  if (!p->cg) /* interpreter: the plan the native backend would make */
    return cg_plan_stats(&p->g, &st->arena_bytes, &st->naive_bytes) ? LATHE_ENOMEM : 0;
  cg_stats c;
  cg_get_stats(p->cg, &c);
  st->ir_ms = c.parse_ms, st->opt_ms = c.llvm_opt_ms, st->codegen_ms = c.codegen_ms, st->jit_ms = c.jit_ms;
  st->cache_hit = c.cache_hit, st->kernels = c.kernels, st->kernels_unique = c.kernels_unique;
  st->arena_bytes = c.arena_bytes, st->naive_bytes = c.naive_bytes;
  st->program_cache_hit = c.shared, st->parts = c.parts;
  return 0;
}

char *lathe_program_profile(const lathe_program *p) { return p && p->cg ? cg_profile_text(p->cg) : NULL; }

/* ---- weights ---- */

/* Parameter buffers are allocated when weights arrive, not at compile time:
 * `lathe check` on a model with billions of parameters needs none of them. */
int api_alloc_params(lathe_program *p, lathe_error *err) {
  int64_t total = 0;
  for (int i = 0; i < p->g.nparams; i++) total += ir_numel(&p->g.params[i].shape);
  for (int i = 0; i < p->g.nparams; i++) {
    if (p->params[i]) continue;
    p->params[i] = calloc((size_t)ir_numel(&p->g.params[i].shape) + 1, api_param_elem_size(&p->g.params[i]));
    if (!p->params[i])
      return api_fail(err, LATHE_ENOMEM, "out of memory: the model's %lld parameters need %.1f GiB",
                      (long long)total, (double)total * 4 / (1 << 30));
  }
  return 0;
}

int lathe_weights_init(lathe_program *p, uint64_t seed, lathe_error *err) {
  if (!p) return api_null(err, "lathe_weights_init", "the program");
  if (api_alloc_params(p, err)) return err ? err->code : LATHE_ENOMEM;
  for (int i = 0; i < p->g.nparams; i++) /* stored (quantized) weights stay zero */
    if (!p->g.params[i].stored) ir_param_init_values(&p->g.params[i], seed, p->params[i]);
  api_derive_params(p); /* a weight kept f32 is its stored tensors' (zeros) */
  p->weights_set = 1;
  api_params_changed(p);
  return 0;
}

int api_same_shape(const lathe_tensor *t, const ir_shape *s) {
  if (t->rank != s->rank) return 0;
  for (int j = 0; j < s->rank; j++)
    if (t->shape[j] != s->d[j]) return 0;
  return 1;
}

void api_tensor_shape_str(const lathe_tensor *t, char *buf, size_t n) {
  ir_shape s = {.rank = t->rank};
  for (int j = 0; j < t->rank; j++) s.d[j] = t->shape[j];
  ir_shape_str(&s, buf, n);
}

/* A checkpoint (runtime/train_ckpt.c) also holds optimizer state and the
 * run's position; a program that does not train ignores them. */
static int is_checkpoint_extra(const char *name) {
  return strncmp(name, "opt.", 4) == 0 || strncmp(name, "__meta.", 7) == 0 || api_pre_is_name(name);
}

/* Check every parameter is present with the right shape and no tensor is left
 * over, before anything is copied: a failed load leaves the old weights. */
static int check_weights(const lathe_program *p, const char *path, const rt_st_file *f, lathe_error *err) {
  char want[128], got[128];
  if (api_quant_mismatch(p, path, f, err)) return -1; /* quantized for another program */
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    if (pr->from_quant) continue; /* made from its stored tensors (api_derive_params) */
    const rt_st_entry *e = rt_st_find(f, pr->name);
    ir_shape_str(&pr->shape, want, sizeof want);
    if (!e && pr->stored)
      return api_fail(err, LATHE_EUSER, "'%s': missing quantized tensor '%s' (%s%s): the program is compiled for "
                      "quantized weights; give a file lathe quantize wrote in that mode", path, pr->name,
                      ir_dtype_name(pr->dtype), want);
    if (!e && p->pipe_stage && !strcmp(pr->name, ST_ACT_IN)) continue; /* what the stage receives */
    if (!e)
      return api_fail(err, LATHE_EUSER, "'%s': missing tensor '%s' (the model expects %s%s)", path,
                      pr->name, ir_dtype_name(pr->dtype), want);
    if (!api_same_shape(&e->t, &pr->shape)) {
      api_tensor_shape_str(&e->t, got, sizeof got);
      return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' has shape %s, but the model expects %s", path,
                      pr->name, got, want);
    }
    if (pr->stored && e->t.dtype != (lathe_dtype)pr->dtype)
      return api_fail(err, LATHE_EUSER, "'%s': quantized tensor '%s' has dtype %s, but the model expects %s", path,
                      pr->name, lathe_dtype_name(e->t.dtype), ir_dtype_name(pr->dtype));
    if (!pr->stored && e->t.dtype != LATHE_F32 && e->t.dtype != LATHE_F16 && e->t.dtype != LATHE_BF16)
      return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' has dtype %s, but the model expects f32", path,
                      pr->name, lathe_dtype_name(e->t.dtype));
    if (pr->stored) continue;
    char msg[1024];
    if (rt_st_check_finite(path, e, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  for (int k = 0; k < f->n && !p->pipe_stage; k++) /* a stage has some of the model's parameters */
    if (ir_find_param(&p->g, f->e[k].name) < 0 && !is_checkpoint_extra(f->e[k].name))
      return api_fail(err, LATHE_EUSER, "'%s': unexpected tensor '%s': model '%s' has no such parameter",
                      path, f->e[k].name, p->g.model_name);
  return 0;
}

int lathe_weights_load(lathe_program *p, const char *path, lathe_error *err) {
  if (!p) return api_null(err, "lathe_weights_load", "the program");
  if (!path) return api_null(err, "lathe_weights_load", "the path");
  rt_st_file f = {0};
  char msg[1024];
  if (rt_st_read(path, &f, msg, sizeof msg) != 0) return api_fail(err, LATHE_EUSER, "%s", msg);
  api_pre *pre = NULL;
  int rc = check_weights(p, path, &f, err);
  if (rc == 0) rc = api_pre_read(p, path, &f, &pre, err);
  if (rc == 0) rc = api_alloc_params(p, err);
  for (int i = 0; rc == 0 && i < p->g.nparams; i++) {
    const rt_st_entry *e = p->g.params[i].from_quant ? NULL : rt_st_find(&f, p->g.params[i].name);
    if (!e) continue; /* a pipeline stage's activation (check_weights), or a weight kept f32 */
    if (p->g.params[i].stored) memcpy(p->params[i], e->t.data, lathe_tensor_bytes(&e->t));
    else rt_convert(e->t.data, e->t.dtype, p->params[i], LATHE_F32, ir_numel(&p->g.params[i].shape));
  }
  if (rc == 0) api_derive_params(p);
  if (rc == 0) p->weights_set = 1, api_params_changed(p);
  /* The weights' preprocessing replaces the old one: it belongs to them. */
  if (rc == 0) api_pre_replace(p, pre);
  else api_pre_discard(p, pre);
  rt_st_free(&f);
  return rc;
}

int lathe_weights_save(const lathe_program *p, const char *path, lathe_error *err) {
  if (!p) return api_null(err, "lathe_weights_save", "the program");
  if (!path) return api_null(err, "lathe_weights_save", "the path");
  int n = p->g.nparams;
  if (!p->weights_set) return api_fail(err, LATHE_EUSER, "no weights to save: initialise or load them first");
  int npre = api_pre_count(p);
  rt_st_entry *e = calloc((size_t)(n + npre) + 1, sizeof *e);
  void *names = e ? api_pre_entries(p, e + n) : NULL;
  void **narrow = calloc((size_t)n + 1, sizeof *narrow);
  int rc = e && names && narrow ? 0 : api_fail(err, LATHE_ENOMEM, "out of memory");
  int m = 0; /* entries written: a weight kept f32 is not (the file holds its quantized tensors) */
  for (int i = 0; rc == 0 && i < n; i++) {
    if (p->g.params[i].from_quant) continue;
    rt_st_entry *ei = &e[m++];
    ei->name = (char *)p->g.params[i].name;
    lathe_param_view(p, i, &ei->t);
    /* The spec: weights in the parameter's dtype. Values are held in f32;
     * an f16 or bf16 parameter (a layer on an f16 input) is written narrow. */
    lathe_dtype want = (lathe_dtype)p->g.params[i].dtype;
    if (p->g.params[i].stored || (want != LATHE_F16 && want != LATHE_BF16)) continue;
    int64_t k = lathe_tensor_numel(&ei->t);
    if (!(narrow[i] = malloc((size_t)(k > 0 ? k : 1) * 2))) {
      rc = api_fail(err, LATHE_ENOMEM, "out of memory");
      break;
    }
    rt_convert(ei->t.data, LATHE_F32, narrow[i], want, k);
    ei->t.data = narrow[i], ei->t.dtype = want;
  }
  if (e && m < n) memmove(e + m, e + n, sizeof *e * (size_t)npre); /* the preprocessing's entries follow */
  char msg[1024];
  int nmeta;
  const char *const *meta = api_quant_meta(p, &nmeta);
  if (rc == 0 && rt_st_write_meta(path, e, m + npre, meta, nmeta, msg, sizeof msg))
    rc = api_fail(err, LATHE_EUSER, "%s", msg);
  for (int i = 0; narrow && i < n; i++) free(narrow[i]);
  free(narrow);
  free(names);
  free(e);
  return rc;
}

/* ---- running ---- */

typedef struct {
  const char *src;
  char *dst;
} copy_job;

static void copy_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const copy_job *c = ctx;
  memcpy(c->dst + lo, c->src + lo, (size_t)(hi - lo));
}

/* An input of the program's own dtype is copied over the pool when it is
 * large: one thread's memcpy of dense1024_b256's 1 MB input took 80-110 us
 * of a 1.3-1.4 ms step (bench/README.md, "The rows, and the input copy").
 * Anything else converts on this thread (rt_convert). */
enum { COPY_SPLIT = 1 << 18, COPY_GRAIN = 1 << 16 }; /* bytes */
static void copy_input(const lathe_tensor *t, void *buf, lathe_dtype dt, int64_t n) {
  int64_t bytes = n * (int64_t)lathe_dtype_size(dt);
  const char *s = t->data, *d = buf;
  int overlap = s < d + bytes && d < s + bytes; /* rt_convert's memmove handles it */
  if (t->dtype != dt || dt == LATHE_BOOL || bytes < COPY_SPLIT || overlap || rt_pool_size() < 2) {
    rt_convert(t->data, t->dtype, buf, dt, n);
    return;
  }
  copy_job c = {t->data, buf};
  rt_pool_for(bytes, COPY_GRAIN, copy_part, &c);
}

int lathe_set_input(lathe_program *p, const char *name, const lathe_tensor *t, lathe_error *err) {
  static const char fn[] = "lathe_set_input";
  if (!p) return api_null(err, fn, "the program");
  if (!name) return api_null(err, fn, "the input name");
  if (api_check_tensor(err, fn, "the tensor", t)) return LATHE_EUSER;
  int i = ir_find_input(&p->g, name);
  if (i < 0) return api_fail(err, LATHE_EUSER, "model '%s' has no input '%s'", p->g.model_name, name);
  const ir_input *in = &p->g.inputs[i];
  char want[128], got[128];
  ir_shape_str(&in->shape, want, sizeof want);
  if (!api_same_shape(t, &in->shape)) {
    api_tensor_shape_str(t, got, sizeof got);
    return api_fail(err, LATHE_EUSER, "input '%s': expected shape %s, got %s", name, want, got);
  }
  int want_float = ir_dtype_is_float(in->dtype);
  int got_float = ir_dtype_is_float((ir_dtype)t->dtype);
  if (want_float != got_float)
    return api_fail(err, LATHE_EUSER, "input '%s': expected %s%s, got a %s array", name,
                    ir_dtype_name(in->dtype), want, lathe_dtype_name(t->dtype));
  int64_t n = ir_numel(&in->shape);
  /* The shape is fixed, so an earlier buffer (always n doubles) is reused:
   * no allocation per step in an inference loop. */
  void *buf = p->in[i].data ? p->in[i].data : malloc((size_t)n * sizeof(double) + 1);
  if (!buf) return api_fail(err, LATHE_ENOMEM, "out of memory");
  /* Kept in the declared dtype so every backend reads the same bytes. */
  copy_input(t, buf, (lathe_dtype)in->dtype, n);
  api_pre_apply(p, i, buf, n); /* raw features in, normalised as in training */
  memset(&p->in[i], 0, sizeof p->in[i]);
  p->in[i].dtype = (lathe_dtype)in->dtype;
  shape_to_tensor(&in->shape, &p->in[i]);
  p->in[i].data = buf;
  p->in_set[i] = 1;
  api_unbind(p, i);
  return 0;
}

static double *to_doubles(const void *src, lathe_dtype t, int64_t n) {
  double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
  if (!d) return NULL;
  float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
  if (!f) { free(d); return NULL; }
  /* Integers go through i64 so large ids stay exact. */
  if (ir_dtype_is_float((ir_dtype)t)) {
    rt_convert(src, t, f, LATHE_F32, n);
    for (int64_t k = 0; k < n; k++) d[k] = f[k];
  } else {
    int64_t *q = malloc((size_t)(n > 0 ? n : 1) * sizeof *q);
    if (!q) { free(f); free(d); return NULL; }
    rt_convert(src, t, q, LATHE_I64, n);
    for (int64_t k = 0; k < n; k++) d[k] = (double)q[k];
    free(q);
  }
  free(f);
  return d;
}

static int fill_leaves(lathe_program *p, lathe_error *err) {
  const ir_graph *g = &p->g;
  p->missing_target = 0;
  for (int i = 0; i < g->ninputs; i++) {
    const ir_input *in = &g->inputs[i];
    int64_t n = ir_numel(&in->shape);
    if (!p->in_set[i] && !in->is_target)
      return api_fail(err, LATHE_EUSER, "input '%s' was not given (use --in %s=FILE.npy)", in->name, in->name);
    if (!p->in_set[i]) {
      /* A forward run needs no targets: zeros stand in and the loss is not reported. */
      p->vals[in->node] = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
      p->missing_target = 1;
    } else {
      const void *src = api_input_data(p, i, err);
      if (!src) return LATHE_ENOMEM;
      p->vals[in->node] = to_doubles(src, (lathe_dtype)in->dtype, n);
    }
    if (!p->vals[in->node]) return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  for (int i = 0; i < g->nparams; i++) {
    int64_t n = ir_numel(&g->params[i].shape);
    lathe_dtype t = g->params[i].stored ? (lathe_dtype)g->params[i].dtype : LATHE_F32;
    p->vals[g->params[i].node] = to_doubles(p->params[i], t, n);
    if (!p->vals[g->params[i].node]) return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  return 0;
}

/* Whether parameter i only ever holds weights while p runs: f32, not
 * optimizer state or a buffer the step updates, not a decode step's cache
 * or a pipeline update's weight (an output "new.X" carries X's next
 * value back), not the activation a pipeline stage receives. */
static int constant_param(const lathe_program *p, int i) {
  const ir_param *pr = &p->g.params[i];
  if (pr->stored || pr->state || pr->buffer || pr->dtype != IR_F32 || !strcmp(pr->name, ST_ACT_IN)) return 0;
  size_t np = strlen(OPT_NEW_PREFIX);
  for (int o = 0; o < p->g.noutputs; o++) {
    const char *nm = p->g.outputs[o].name;
    if (!strncmp(nm, OPT_NEW_PREFIX, np) && !strcmp(nm + np, pr->name)) return 0;
  }
  return 1;
}

/* An inference program's packed weights (runtime/gemm_pack.h), made at its
 * first run: a training step writes its weights every step, so it keeps
 * OpenBLAS (and its bits the same at every optimisation level). No table
 * (NULL) is always a correct answer: OpenBLAS then takes every product. */
static void make_pack(lathe_program *p) {
  p->pack_tried = 1;
  if (p->is_train || p->pipe_stage || !p->g.nparams) return;
  int *constant = calloc((size_t)p->g.nparams, sizeof *constant);
  int64_t *bytes = calloc((size_t)p->g.nparams, sizeof *bytes);
  if (constant && bytes) {
    for (int i = 0; i < p->g.nparams; i++) {
      constant[i] = constant_param(p, i);
      bytes[i] = ir_numel(&p->g.params[i].shape) * (int64_t)sizeof(float);
    }
    p->pack = gpk_new(p->g.nparams, constant, bytes);
  }
  free(constant);
  free(bytes);
}

/* The compiled program reads inputs in their declared dtype; a target that
 * was not given is zero-filled (a forward run needs no targets). */
static int run_llvm(lathe_program *p, lathe_error *err) {
  const ir_graph *g = &p->g;
  /* Per-step work is kept to the kernels: no allocation for small models. */
  enum { NSTACK = 16 };
  void *stack_ins[NSTACK];
  void **ins = g->ninputs <= NSTACK ? stack_ins : calloc((size_t)g->ninputs + 1, sizeof *ins);
  int rc = ins ? 0 : api_fail(err, LATHE_ENOMEM, "out of memory");
  p->missing_target = 0;
  for (int i = 0; rc == 0 && i < g->ninputs; i++) {
    const ir_input *in = &g->inputs[i];
    if (p->in_set[i]) {
      if (!(ins[i] = (void *)api_input_data(p, i, err))) rc = LATHE_ENOMEM;
      continue;
    }
    if (!in->is_target) {
      rc = api_fail(err, LATHE_EUSER, "input '%s' was not given (use --in %s=FILE.npy)", in->name, in->name);
      break;
    }
    /* A zero-filled target, kept (unset) in the input's slot and sized as
     * lathe_set_input's buffers, which may reuse it later. */
    if (!p->in[i].data) {
      p->in[i].data = calloc((size_t)ir_numel(&in->shape) * sizeof(double) + 1, 1);
      p->in[i].dtype = (lathe_dtype)in->dtype;
      shape_to_tensor(&in->shape, &p->in[i]);
    }
    ins[i] = p->in[i].data;
    p->missing_target = 1;
    if (!ins[i]) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  char msg[1024];
  if (rc == 0 && p->cux &&
      cu_exec_run(p->cux, ins, (void *const *)p->params, p->outbufs, &p->loss, msg, sizeof msg) != 0)
    rc = api_fail(err, LATHE_EUSER, "%s", msg);
  else if (rc == 0 && p->cg) {
    if (!p->pack_tried) make_pack(p);
    gpk_enter(p->pack, (void *const *)p->params);
    if (cg_run(p->cg, ins, (void *const *)p->params, p->outbufs, &p->loss, msg, sizeof msg) != 0)
      rc = api_fail(err, LATHE_EUSER, "%s", msg);
    gpk_leave(p->pack);
  }
  if (ins != stack_ins) free(ins);
  p->ran = rc == 0;
  return rc;
}

int lathe_run(lathe_program *p, lathe_error *err) {
  if (!p) return api_null(err, "lathe_run", "the program");
  if (!p->weights_set)
    return api_fail(err, LATHE_EUSER,
                    "model '%s' has %d parameters but no weights were loaded (lathe init writes fresh ones)",
                    p->g.model_name, p->g.nparams);
  return p->is_train ? api_train_run(p, err) : api_run_core(p, err);
}

int api_run_core(lathe_program *p, lathe_error *err) {
  if (p->cg || p->cux) return run_llvm(p, err); /* the native backends */
  release_vals(p);
  p->vals = calloc((size_t)p->g.nnodes + 1, sizeof *p->vals);
  if (!p->vals) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int rc = fill_leaves(p, err);
  if (rc) { release_vals(p); return rc; }
  char msg[1024];
  ir_interp_mode mode = p->opt.f64 ? IR_INTERP_F64 : IR_INTERP_F32;
  if (ir_interp(&p->g, mode, p->vals, msg, sizeof msg) != 0) {
    release_vals(p);
    return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  p->ran = 1;
  return 0;
}

/* The name of a zero-filled (not given) target that node reads, or NULL.
 * Operands precede their users, so one backward sweep finds every leaf. */
static const char *zeroed_target_read(const lathe_program *p, int node) {
  const ir_graph *g = &p->g;
  char *reach = calloc((size_t)node + 1, 1);
  if (!reach) return "(out of memory)";
  reach[node] = 1;
  const char *found = NULL;
  for (int id = node; id >= 0 && !found; id--) {
    if (!reach[id]) continue;
    const ir_node *n = &g->nodes[id];
    if (n->op == IR_INPUT && n->attr.i >= 0 && n->attr.i < g->ninputs && g->inputs[n->attr.i].is_target &&
        !p->in_set[n->attr.i])
      found = g->inputs[n->attr.i].name;
    for (int k = 0; k < n->nin; k++)
      if (n->in[k] >= 0 && n->in[k] < id) reach[n->in[k]] = 1;
  }
  free(reach);
  return found;
}

int lathe_get_output(const lathe_program *p, const char *name, lathe_tensor *out, lathe_error *err) {
  static const char fn[] = "lathe_get_output";
  if (!out) return api_null(err, fn, "the output tensor");
  memset(out, 0, sizeof *out);
  if (!p) return api_null(err, fn, "the program");
  if (!name) return api_null(err, fn, "the output name");
  if (!p->ran) return api_fail(err, LATHE_EUSER, "no results yet: call lathe_run first");
  int node;
  if (strcmp(name, "loss") == 0 && p->g.loss >= 0) {
    if (p->missing_target)
      return api_fail(err, LATHE_EUSER, "the loss needs the targets: give every target input");
    node = p->g.loss;
  } else {
    int o = ir_find_output(&p->g, name);
    if (o < 0) return api_fail(err, LATHE_EUSER, "model '%s' has no output '%s'", p->g.model_name, name);
    node = p->g.outputs[o].node;
    /* A forward run zero-fills targets not given; an output computed from
     * one would be a silent wrong answer. */
    const char *t = p->missing_target ? zeroed_target_read(p, node) : NULL;
    if (t)
      return api_fail(err, LATHE_EUSER, "output '%s' reads target '%s', which was not given (use --in %s=FILE.npy)",
                      name, t, t);
  }
  const ir_node *nd = &p->g.nodes[node];
  int64_t n = ir_numel(&nd->shape);
  int is_float = ir_dtype_is_float(nd->dtype);
  out->dtype = is_float ? LATHE_F32 : (nd->dtype == IR_I64 ? LATHE_I64 : LATHE_I32);
  shape_to_tensor(&nd->shape, out);
  out->data = malloc((size_t)(n > 0 ? n : 1) * lathe_dtype_size(out->dtype));
  if (!out->data) return api_fail(err, LATHE_ENOMEM, "out of memory");
  if (p->cg || p->cux) {
    if (node == p->g.loss) ((float *)out->data)[0] = p->loss;
    else rt_convert(api_output_data(p, ir_find_output(&p->g, name)), (lathe_dtype)nd->dtype, out->data, out->dtype, n);
    return 0;
  }
  const double *v = p->vals[node];
  for (int64_t k = 0; k < n; k++) {
    if (out->dtype == LATHE_F32) ((float *)out->data)[k] = (float)v[k];
    else if (out->dtype == LATHE_I64) ((int64_t *)out->data)[k] = (int64_t)v[k];
    else ((int32_t *)out->data)[k] = (int32_t)v[k];
  }
  return 0;
}

/* ---- arrays on disk ---- */

/* The .npy keeps the output's declared dtype: f16 as f16, i8 as i8 (the
 * values came back widened and convert back exactly). NumPy has no bf16, so
 * bf16 is written as f32, which holds it exactly. */
int lathe_output_save(const lathe_program *p, const char *name, const char *path, lathe_error *err) {
  if (!path) return api_null(err, "lathe_output_save", "the path");
  lathe_tensor t;
  int rc = lathe_get_output(p, name, &t, err);
  if (rc) return rc;
  int o = strcmp(name, "loss") == 0 && p->g.loss >= 0 ? -1 : ir_find_output(&p->g, name);
  lathe_dtype want = o >= 0 ? (lathe_dtype)p->g.nodes[p->g.outputs[o].node].dtype : t.dtype;
  if (want == LATHE_BF16) want = LATHE_F32;
  if (want != t.dtype) {
    int64_t n = lathe_tensor_numel(&t);
    void *d = malloc((size_t)(n > 0 ? n : 1) * lathe_dtype_size(want));
    if (!d) {
      lathe_tensor_free(&t);
      return api_fail(err, LATHE_ENOMEM, "out of memory");
    }
    rt_convert(t.data, t.dtype, d, want, n);
    free(t.data);
    t.data = d, t.dtype = want;
  }
  rc = lathe_npy_save(path, &t, err);
  lathe_tensor_free(&t);
  return rc;
}

int lathe_npy_load(const char *path, lathe_tensor *out, lathe_error *err) {
  if (!out) return api_null(err, "lathe_npy_load", "the output tensor");
  memset(out, 0, sizeof *out);
  if (!path) return api_null(err, "lathe_npy_load", "the path");
  char msg[1024];
  return rt_npy_read(path, out, msg, sizeof msg) ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
}

int lathe_npy_save(const char *path, const lathe_tensor *t, lathe_error *err) {
  if (!path) return api_null(err, "lathe_npy_save", "the path");
  if (api_check_tensor(err, "lathe_npy_save", "the tensor", t)) return LATHE_EUSER;
  char msg[1024];
  return rt_npy_write(path, t, msg, sizeof msg) ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
}

/* ---- direct access for the training loop (runtime/train.h) ---- */

const void *api_output_data(const lathe_program *p, int o) {
  if (p->committed && p->commit && p->commit[o] >= 0 && p->g.nodes[p->g.outputs[o].node].dtype == IR_F32)
    return p->params[p->commit[o]];
  return p->outbufs[o];
}

void api_read_output(const lathe_program *p, int o, float *dst) {
  int node = o < 0 ? p->g.loss : p->g.outputs[o].node;
  int64_t n = ir_numel(&p->g.nodes[node].shape);
  if (p->cg || p->cux) {
    if (o < 0) dst[0] = p->loss;
    else rt_convert(api_output_data(p, o), (lathe_dtype)p->g.nodes[node].dtype, dst, LATHE_F32, n);
    return;
  }
  for (int64_t k = 0; k < n; k++) dst[k] = (float)p->vals[node][k];
}

int api_output_finite(const lathe_program *p, int o) {
  int node = p->g.outputs[o].node;
  int64_t n = ir_numel(&p->g.nodes[node].shape);
  if (!p->cg && !p->cux) {
    for (int64_t k = 0; k < n; k++)
      if (!isfinite(p->vals[node][k])) return 0;
    return 1;
  }
  if (p->g.nodes[node].dtype != IR_F32) return 1;
  const float *v = p->outbufs[o];
  for (int64_t k = 0; k < n; k++)
    if (!isfinite(v[k])) return 0;
  return 1;
}

float api_loss(const lathe_program *p) {
  float l = 0;
  api_read_output(p, -1, &l);
  return l;
}
