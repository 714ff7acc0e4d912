/* cg_aot.c -- ahead-of-time code (`lathe emit`): the forward program
 * compiled through the same kernel plan and LLVM module as the JIT
 * (cg_jit.c's entry and kernels, cg_split.c's optimisation, for the host
 * CPU, or for another triple and CPU: cross-compilation), written as one
 * object file, plus what makes it usable on its own:
 *   - the image (rt/rt_image.h): the plan's buffers, the inputs and outputs,
 *     the weight table, the plan's constants and (unless a weights file is
 *     asked for) the weights, one constant block;
 *   - small wrappers MODEL_forward, MODEL_forward_ws, MODEL_set_threads and
 *     (with a weights file) MODEL_load_weights, each a call into
 *     liblathe_rt's runner (rt/rt_model.c) with the image, the entry and the
 *     model's state.
 * Every symbol carries the model's name, so several emitted models link
 * into one program. */
#include "cg_internal.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_aot.h"
#include "cg_split.h"
#include "plan/plan.h"
#include "rt/lathe_rt.h"
#include "rt/rt_image.h"

static int64_t up64(int64_t n) { return (n + 63) / 64 * 64; }

/* ---- the image ---- */

typedef struct {
  lathe_rt_image h;
  lathe_rt_buf *buf;
  lathe_rt_io *in, *out;
  lathe_rt_tensor *t;
  unsigned char *weights; /* the section (ntensors' data) */
  unsigned char *consts;
  lathe_rt_train tr;      /* --entry train_step: */
  lathe_rt_train_in *tin; /* per input */
  int64_t *commit;        /* per output */
  int64_t *checked;       /* per output: its kernel checks finiteness (plan's pl_buf.checked) */
} image_parts;

static void parts_free(image_parts *ip) {
  free(ip->buf), free(ip->in), free(ip->out), free(ip->t), free(ip->weights), free(ip->consts);
  free(ip->tin), free(ip->commit), free(ip->checked);
}

/* A training step's per-input and per-output records; its data arguments
 * are the inputs, then the targets, each in the model file's order. */
static int make_train(const pl_plan *plan, const cg_aot_train *s, image_parts *ip, char *msg, size_t msgn) {
  const ir_graph *g = plan->g;
  ip->tin = calloc((size_t)g->ninputs + 1, sizeof *ip->tin);
  ip->commit = calloc((size_t)g->noutputs + 1, sizeof *ip->commit);
  ip->checked = calloc((size_t)g->noutputs + 1, sizeof *ip->checked);
  if (!ip->tin || !ip->commit || !ip->checked) return ir_fail(msg, msgn, "emit: out of memory");
  int64_t arg = 0;
  for (int pass = LATHE_RT_IN_ARG; pass <= LATHE_RT_IN_TARGET; pass++)
    for (int i = 0; i < g->ninputs; i++) {
      lathe_rt_train_in *ti = &ip->tin[i];
      if (pass == LATHE_RT_IN_ARG) {
        if (strlen(g->inputs[i].name) >= sizeof ti->name)
          return ir_fail(msg, msgn, "emit: input name '%s' is too long", g->inputs[i].name);
        strcpy(ti->name, g->inputs[i].name);
        ti->role = s->role[i], ti->arg = -1, ti->norm_kind = s->norm_kind[i];
      }
      if (s->role[i] == pass) ti->arg = arg++;
    }
  for (int j = 0; j < g->noutputs; j++) {
    ip->commit[j] = s->commit[j];
    ip->checked[j] = plan->buf[g->outputs[j].node].checked;
    if (s->commit[j] >= 0 && ip->t[s->commit[j]].bytes != ir_numel(&g->nodes[g->outputs[j].node].shape) * 4)
      return ir_fail(msg, msgn, "emit: internal error: output '%s' is not the size of its parameter",
                     g->outputs[j].name);
  }
  if (g->loss < 0) return ir_fail(msg, msgn, "emit: the training program has no loss");
  ip->tr = (lathe_rt_train){.nparams = s->nparams, .loss_node = g->loss, .seed = s->seed, .beta1 = s->beta1,
                            .beta2 = s->beta2, .grad_noise = s->grad_noise,
                            .sched = {s->sched, s->lr, s->gamma, s->every, s->warmup, s->min_lr}};
  return 0;
}

static const int buf_kind[] = {
  [PL_BUF_ARENA] = LATHE_RT_BUF_ARENA, [PL_BUF_INPUT] = LATHE_RT_BUF_INPUT, [PL_BUF_PARAM] = LATHE_RT_BUF_PARAM,
  [PL_BUF_CONST] = LATHE_RT_BUF_CONST, [PL_BUF_OUTPUT] = LATHE_RT_BUF_OUTPUT, [PL_BUF_ALIAS] = LATHE_RT_BUF_ALIAS,
  [PL_BUF_NONE] = LATHE_RT_BUF_NONE,
};

/* Tensor record i: name, shape (rank dims) at the next offset of the section. */
static int add_tensor(image_parts *ip, int i, const char *name, const int64_t *dims, int rank, int64_t *off,
                      char *msg, size_t msgn) {
  lathe_rt_tensor *t = &ip->t[i];
  if (strlen(name) >= sizeof t->name)
    return ir_fail(msg, msgn, "emit: tensor name '%s' is longer than %d characters", name, LATHE_RT_NAME - 1);
  memcpy(t->name, name, strlen(name) + 1);
  t->rank = rank;
  int64_t n = 1;
  for (int d = 0; d < rank; d++) t->dim[d] = dims[d], n *= dims[d];
  t->off = *off;
  t->bytes = n * 4;
  *off += up64(t->bytes);
  return 0;
}

/* The weight table and section: parameters, then each normalised input's
 * shift and scale. */
static int make_weights(const ir_graph *g, const cg_aot_spec *s, image_parts *ip, char *msg, size_t msgn) {
  int nt = g->nparams;
  for (int i = 0; i < g->ninputs; i++) nt += s->shift[i] ? 2 : 0;
  ip->t = calloc((size_t)nt + 1, sizeof *ip->t);
  ip->in = calloc((size_t)g->ninputs + 1, sizeof *ip->in);
  if (!ip->t || !ip->in) return ir_fail(msg, msgn, "emit: out of memory");
  int64_t off = 0;
  int k = 0;
  for (int j = 0; j < g->nparams; j++, k++)
    if (add_tensor(ip, k, g->params[j].name, g->params[j].shape.d, g->params[j].shape.rank, &off, msg, msgn)) return -1;
  for (int i = 0; i < g->ninputs; i++) {
    ip->in[i].shift = ip->in[i].scale = -1;
    if (!s->shift[i]) continue;
    char name[LATHE_RT_NAME + 64];
    snprintf(name, sizeof name, "__preprocess.%s.shift", g->inputs[i].name);
    ip->in[i].shift = k;
    if (add_tensor(ip, k++, name, &s->width[i], 1, &off, msg, msgn)) return -1;
    snprintf(name, sizeof name, "__preprocess.%s.scale", g->inputs[i].name);
    ip->in[i].scale = k;
    if (add_tensor(ip, k++, name, &s->width[i], 1, &off, msg, msgn)) return -1;
    ip->in[i].width = s->width[i];
  }
  ip->h.ntensors = nt;
  ip->h.weights_bytes = off;
  ip->weights = calloc((size_t)off + 64, 1);
  if (!ip->weights) return ir_fail(msg, msgn, "emit: out of memory for the weights");
  for (int j = 0; j < g->nparams; j++) memcpy(ip->weights + ip->t[j].off, s->params[j], (size_t)ip->t[j].bytes);
  for (int i = 0; i < g->ninputs; i++)
    if (s->shift[i]) {
      memcpy(ip->weights + ip->t[ip->in[i].shift].off, s->shift[i], (size_t)s->width[i] * 4);
      memcpy(ip->weights + ip->t[ip->in[i].scale].off, s->scale[i], (size_t)s->width[i] * 4);
    }
  ip->h.weights_sum = lathe_rt_fnv1a(ip->weights, off);
  return 0;
}

/* The buffers, the inputs and outputs, and the workspace: the arena, then a
 * copy per target (zeros) and normalised input, then the pointer tables. */
static int make_layout(const pl_plan *plan, const cg_aot_spec *s, image_parts *ip, char *msg, size_t msgn) {
  const ir_graph *g = plan->g;
  ip->buf = calloc((size_t)g->nnodes + 1, sizeof *ip->buf);
  ip->out = calloc((size_t)g->noutputs + 1, sizeof *ip->out);
  ip->consts = calloc((size_t)plan->const_bytes + 64, 1);
  if (!ip->buf || !ip->out || !ip->consts) return ir_fail(msg, msgn, "emit: out of memory");
  for (int i = 0; i < g->nnodes; i++) {
    const pl_buf *b = &plan->buf[i];
    ip->buf[i] = (lathe_rt_buf){buf_kind[b->kind], b->idx, b->off, b->scr, b->bytes};
  }
  cg_fill_consts(ip->consts, plan->buf, g);
  int64_t work = up64(plan->arena_bytes), nargs = 0;
  for (int i = 0; i < g->ninputs; i++) {
    const ir_input *x = &g->inputs[i];
    lathe_rt_io *io = &ip->in[i];
    io->dtype = x->dtype;
    io->bytes = ir_numel(&x->shape) * (int64_t)ir_dtype_size(x->dtype);
    io->node = x->node;
    io->is_target = x->is_target;
    io->copy_off = -1;
    /* train: targets are arguments, the per-step scalars the runner's */
    int data = s->train && s->train->role[i] <= LATHE_RT_IN_TARGET;
    if (s->train ? !data || io->shift >= 0 : x->is_target || io->shift >= 0) io->copy_off = work, work += up64(io->bytes);
    nargs += s->train ? data : !x->is_target;
  }
  for (int j = 0; j < g->noutputs; j++) {
    const ir_node *n = &g->nodes[g->outputs[j].node];
    ip->out[j] = (lathe_rt_io){.dtype = n->dtype, .bytes = ir_numel(&n->shape) * (int64_t)ir_dtype_size(n->dtype),
                               .node = g->outputs[j].node, .copy_off = -1, .shift = -1, .scale = -1};
    if (s->train) ip->out[j].copy_off = work, work += up64(ip->out[j].bytes); /* a step's outputs are its own */
  }
  ip->h.nnodes = g->nnodes, ip->h.ninputs = g->ninputs, ip->h.noutputs = g->noutputs, ip->h.nargs = nargs;
  ip->h.tables_off = work;
  ip->h.work_bytes = work + 2 * (int64_t)sizeof(void *) * (g->nnodes ? g->nnodes : 1);
  return 0;
}

/* One block: header, tables, name, constants, weights (when embedded). */
static unsigned char *image_bytes(image_parts *ip, const ir_graph *g, const char *name, int embed, int64_t cbytes,
                                  size_t *len) {
  lathe_rt_image *h = &ip->h;
  h->magic = LATHE_RT_IMAGE_MAGIC;
  h->abi = LATHE_RT_ABI;
  int64_t off = up64(sizeof *h);
  h->bufs_off = off, off += up64((int64_t)sizeof *ip->buf * g->nnodes);
  h->inputs_off = off, off += up64((int64_t)sizeof *ip->in * g->ninputs);
  h->outputs_off = off, off += up64((int64_t)sizeof *ip->out * g->noutputs);
  h->tensors_off = off, off += up64((int64_t)sizeof *ip->t * h->ntensors);
  h->name_off = off, off += up64((int64_t)strlen(name) + 1);
  h->consts_off = off, off += up64(cbytes);
  h->train_off = -1;
  if (ip->tin) { /* a training step */
    h->train_off = off, off += up64((int64_t)sizeof ip->tr);
    ip->tr.ins_off = off, off += up64((int64_t)sizeof *ip->tin * g->ninputs);
    ip->tr.commit_off = off, off += up64((int64_t)sizeof *ip->commit * g->noutputs);
    ip->tr.checked_off = off, off += up64((int64_t)sizeof *ip->checked * g->noutputs);
  }
  h->weights_off = embed ? off : -1;
  if (embed) off += h->weights_bytes;
  unsigned char *b = calloc((size_t)off + 1, 1);
  if (!b) return NULL;
  memcpy(b, h, sizeof *h);
  memcpy(b + h->bufs_off, ip->buf, sizeof *ip->buf * (size_t)g->nnodes);
  memcpy(b + h->inputs_off, ip->in, sizeof *ip->in * (size_t)g->ninputs);
  memcpy(b + h->outputs_off, ip->out, sizeof *ip->out * (size_t)g->noutputs);
  memcpy(b + h->tensors_off, ip->t, sizeof *ip->t * (size_t)h->ntensors);
  memcpy(b + h->name_off, name, strlen(name) + 1);
  memcpy(b + h->consts_off, ip->consts, (size_t)cbytes);
  if (embed) memcpy(b + h->weights_off, ip->weights, (size_t)h->weights_bytes);
  if (ip->tin) {
    memcpy(b + h->train_off, &ip->tr, sizeof ip->tr);
    memcpy(b + ip->tr.ins_off, ip->tin, sizeof *ip->tin * (size_t)g->ninputs);
    memcpy(b + ip->tr.commit_off, ip->commit, sizeof *ip->commit * (size_t)g->noutputs);
    memcpy(b + ip->tr.checked_off, ip->checked, sizeof *ip->checked * (size_t)g->noutputs);
  }
  *len = (size_t)off;
  return b;
}

/* The weights file: header, the records, the section at a 64-byte offset. */
static unsigned char *wfile_bytes(const image_parts *ip, size_t *len) {
  lathe_rt_wfile w = {LATHE_RT_WEIGHTS_MAGIC, LATHE_RT_ABI, ip->h.ntensors, ip->h.weights_bytes, ip->h.weights_sum, 0};
  w.data_off = up64((int64_t)sizeof w + (int64_t)sizeof *ip->t * ip->h.ntensors);
  size_t n = (size_t)(w.data_off + ip->h.weights_bytes);
  unsigned char *b = calloc(n + 1, 1);
  if (!b) return NULL;
  memcpy(b, &w, sizeof w);
  memcpy(b + sizeof w, ip->t, sizeof *ip->t * (size_t)ip->h.ntensors);
  memcpy(b + w.data_off, ip->weights, (size_t)ip->h.weights_bytes);
  *len = n;
  return b;
}

/* ---- the wrappers ---- */

static LLVMValueRef declare(cg_mod *m, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n) {
  return LLVMAddFunction(m->M, name, LLVMFunctionType(ret, params, n, 0));
}

/* int NAME(params...) whose body calls callee(fixed..., args built by fill) */
typedef struct {
  cg_mod *m;
  LLVMValueRef image, entry, state; /* as i8* */
} wrap_ctx;

static LLVMValueRef begin(wrap_ctx *w, const char *prefix, const char *suffix, LLVMTypeRef *params, unsigned n) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  LLVMValueRef f = declare(w->m, name, w->m->i32, params, n);
  LLVMPositionBuilderAtEnd(w->m->B, LLVMAppendBasicBlockInContext(w->m->C, f, "entry"));
  return f;
}

static void finish(wrap_ctx *w, LLVMValueRef callee, LLVMValueRef *args, unsigned n) {
  LLVMTypeRef ty = LLVMGlobalGetValueType(callee);
  LLVMBuildRet(w->m->B, LLVMBuildCall2(w->m->B, ty, callee, args, n, ""));
}

static void emit_wrappers(wrap_ctx *w, const char *model, int64_t nio, int weights_file) {
  cg_mod *m = w->m;
  LLVMTypeRef P = m->ptr, p4[6] = {P, P, P, P, P, P}, ios[64];
  char pre[128];
  snprintf(pre, sizeof pre, "%s_", model);
  /* MODEL_forward(in..., out...): the pointers into an array */
  LLVMValueRef fwd_rt = declare(m, "lathe_rt_forward", m->i32, p4, 4);
  LLVMTypeRef *pt = nio <= 64 ? ios : calloc((size_t)nio, sizeof *pt);
  for (int64_t i = 0; pt && i < nio; i++) pt[i] = P;
  LLVMValueRef f = begin(w, pre, "forward", pt, (unsigned)nio);
  LLVMTypeRef at = LLVMArrayType(P, (unsigned)(nio ? nio : 1));
  LLVMValueRef arr = LLVMBuildAlloca(m->B, at, "io");
  LLVMValueRef arrp = LLVMBuildPointerCast(m->B, arr, LLVMPointerType(P, 0), "");
  for (int64_t i = 0; i < nio; i++) {
    LLVMValueRef ix = LLVMConstInt(m->i64, (unsigned long long)i, 0);
    LLVMBuildStore(m->B, LLVMGetParam(f, (unsigned)i), LLVMBuildGEP2(m->B, P, arrp, &ix, 1, ""));
  }
  LLVMValueRef a4[4] = {w->image, w->entry, w->state, LLVMBuildPointerCast(m->B, arr, P, "")};
  finish(w, fwd_rt, a4, 4);
  if (pt != ios) free(pt);
  /* MODEL_forward_ws(const MODEL_inputs *, MODEL_outputs *, void *workspace) */
  LLVMValueRef ws_rt = declare(m, "lathe_rt_forward_ws", m->i32, p4, 6);
  f = begin(w, pre, "forward_ws", p4, 3);
  LLVMValueRef a6[6] = {w->image, w->entry, w->state, LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2)};
  finish(w, ws_rt, a6, 6);
  /* MODEL_set_threads(int) */
  LLVMValueRef thr_rt = declare(m, "lathe_rt_set_threads", m->i32, &m->i32, 1);
  f = begin(w, pre, "set_threads", &m->i32, 1);
  LLVMValueRef n = LLVMGetParam(f, 0);
  finish(w, thr_rt, &n, 1);
  if (!weights_file) return;
  /* MODEL_load_weights(const char *path) */
  LLVMValueRef ld_rt = declare(m, "lathe_rt_load_weights", m->i32, p4, 3);
  f = begin(w, pre, "load_weights", p4, 1);
  LLVMValueRef a3[3] = {w->image, w->state, LLVMGetParam(f, 0)};
  finish(w, ld_rt, a3, 3);
}

/* --entry train_step: float MODEL_train_step(MODEL_state *, data...) and
 * int MODEL_state_init / _save / _load, MODEL_set_threads and (with a
 * weights file) MODEL_load_weights, each a call into rt/rt_train.c. */
static void emit_train_wrappers(wrap_ctx *w, const char *model, int64_t nargs, int weights_file) {
  cg_mod *m = w->m;
  LLVMTypeRef P = m->ptr, p5[5] = {P, P, P, P, P};
  char name[256];
  /* MODEL_train_step(state, data...): the data pointers into an array */
  LLVMValueRef step_rt = declare(m, "lathe_rt_train_step", m->f32, p5, 5);
  LLVMTypeRef *pt = calloc((size_t)nargs + 1, sizeof *pt);
  for (int64_t i = 0; pt && i <= nargs; i++) pt[i] = P;
  snprintf(name, sizeof name, "%s_train_step", model);
  LLVMValueRef f = declare(m, name, m->f32, pt ? pt : p5, pt ? (unsigned)nargs + 1 : 1);
  free(pt);
  LLVMPositionBuilderAtEnd(m->B, LLVMAppendBasicBlockInContext(m->C, f, "entry"));
  LLVMValueRef arr = LLVMBuildAlloca(m->B, LLVMArrayType(P, (unsigned)(nargs ? nargs : 1)), "args");
  LLVMValueRef arrp = LLVMBuildPointerCast(m->B, arr, LLVMPointerType(P, 0), "");
  for (int64_t i = 0; i < nargs; i++) {
    LLVMValueRef ix = LLVMConstInt(m->i64, (unsigned long long)i, 0);
    LLVMBuildStore(m->B, LLVMGetParam(f, (unsigned)i + 1), LLVMBuildGEP2(m->B, P, arrp, &ix, 1, ""));
  }
  LLVMValueRef a5[5] = {w->image, w->entry, w->state, LLVMGetParam(f, 0), LLVMBuildPointerCast(m->B, arr, P, "")};
  finish(w, step_rt, a5, 5);
  /* MODEL_state_init(state) */
  char pre[128];
  snprintf(pre, sizeof pre, "%s_", model);
  LLVMValueRef init_rt = declare(m, "lathe_rt_state_init", m->i32, p5, 3);
  f = begin(w, pre, "state_init", p5, 1);
  LLVMValueRef a3[3] = {w->image, w->state, LLVMGetParam(f, 0)};
  finish(w, init_rt, a3, 3);
  /* MODEL_state_save(state, path), MODEL_state_load(state, path) */
  static const char *const io_fn[2][2] = {{"state_save", "lathe_rt_state_save"}, {"state_load", "lathe_rt_state_load"}};
  for (int k = 0; k < 2; k++) {
    LLVMValueRef rt = declare(m, io_fn[k][1], m->i32, p5, 3);
    f = begin(w, pre, io_fn[k][0], p5, 2);
    LLVMValueRef a[3] = {w->image, LLVMGetParam(f, 0), LLVMGetParam(f, 1)};
    finish(w, rt, a, 3);
  }
  /* MODEL_set_threads(int), MODEL_load_weights(path) as for a forward pass */
  LLVMValueRef thr_rt = declare(m, "lathe_rt_set_threads", m->i32, &m->i32, 1);
  f = begin(w, pre, "set_threads", &m->i32, 1);
  LLVMValueRef n = LLVMGetParam(f, 0);
  finish(w, thr_rt, &n, 1);
  if (!weights_file) return;
  LLVMValueRef ld_rt = declare(m, "lathe_rt_load_weights", m->i32, p5, 3);
  f = begin(w, pre, "load_weights", p5, 1);
  LLVMValueRef b3[3] = {w->image, w->state, LLVMGetParam(f, 0)};
  finish(w, ld_rt, b3, 3);
}

/* An internal constant (or zeroed variable) global of n bytes, as i8*. */
static LLVMValueRef add_bytes(cg_mod *m, const char *name, const unsigned char *bytes, size_t n, int align) {
  LLVMTypeRef ty = LLVMArrayType(m->i8, (unsigned)n);
  LLVMValueRef g = LLVMAddGlobal(m->M, ty, name);
  LLVMSetLinkage(g, LLVMInternalLinkage);
  LLVMSetAlignment(g, (unsigned)align);
  if (bytes) {
    LLVMSetInitializer(g, LLVMConstStringInContext(m->C, (const char *)bytes, (unsigned)n, 1));
    LLVMSetGlobalConstant(g, 1);
  } else {
    LLVMSetInitializer(g, LLVMConstNull(ty));
  }
  return LLVMConstBitCast(g, m->ptr);
}

/* ---- the object ---- */

/* A target machine for triple and cpu, and what LLVM wrote to stderr while
 * making it (said): an unknown CPU is only a warning there ("'x' is not a
 * recognized processor for this target (ignoring processor)", then once per
 * compiled part), which `lathe emit --cpu` turns into an error. Anything
 * else LLVM wrote is passed on. */
static LLVMTargetMachineRef checked_tm(LLVMTargetRef T, const char *triple, const char *cpu, const char *feat,
                                       char *said, size_t saidn) {
  said[0] = '\0';
  FILE *cap = tmpfile();
  int saved = cap ? dup(2) : -1;
  fflush(stderr);
  if (saved >= 0) dup2(fileno(cap), 2);
  LLVMTargetMachineRef tm =
      LLVMCreateTargetMachine(T, triple, cpu, feat, LLVMCodeGenLevelDefault, LLVMRelocPIC, LLVMCodeModelDefault);
  if (saved >= 0) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(cap);
    size_t n = fread(said, 1, saidn - 1, cap);
    said[n] = '\0';
    if (n && !strstr(said, "not a recognized processor")) fputs(said, stderr);
  }
  if (cap) fclose(cap);
  return tm;
}

/* The machine the object is for: this host, its CPU and features (what the
 * JIT compiles for, so the bits match `lathe run`), unless a triple or CPU
 * is named; then that CPU ("generic" by default) with the features its name
 * implies. Each string is LLVM's (LLVMDisposeMessage). 0, or -1 with msg. */
static int aot_target(const cg_aot_spec *s, char **triple, char **cpu, char **feat, char *msg, size_t msgn) {
  if (!s->triple && !s->cpu) {
    *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
    return 0;
  }
  cg_init_all_targets();
  if (s->triple) *triple = LLVMNormalizeTargetTriple(s->triple);
  else *triple = LLVMGetDefaultTargetTriple();
  *cpu = LLVMCreateMessage(s->cpu ? s->cpu : "generic");
  *feat = LLVMCreateMessage("");
  LLVMTargetRef T;
  char *e = NULL;
  if (LLVMGetTargetFromTriple(*triple, &T, &e)) {
    ir_fail(msg, msgn, "emit: --target %s: LLVM %s has no such target (%s)", s->triple, cg_llvm_version(), e ? e : "?");
    LLVMDisposeMessage(e);
  } else {
    /* the image (rt/rt_image.h) is laid out as this host lays out its
     * structs: the target must agree (64-bit pointers, little-endian) */
    char said[512];
    LLVMTargetMachineRef tm = checked_tm(T, *triple, *cpu, *feat, said, sizeof said);
    if (strstr(said, "not a recognized processor")) {
      ir_fail(msg, msgn, "emit: --cpu %s: LLVM %s knows no such CPU for %s (llc-%d -mtriple=%s -mcpu=help lists them)",
              *cpu, cg_llvm_version(), *triple, atoi(cg_llvm_version()), *triple);
      if (tm) LLVMDisposeTargetMachine(tm);
      LLVMDisposeMessage(*triple), LLVMDisposeMessage(*cpu), LLVMDisposeMessage(*feat);
      return -1;
    }
    LLVMTargetDataRef td = tm ? LLVMCreateTargetDataLayout(tm) : NULL;
    int fits = td && LLVMPointerSize(td) == sizeof(void *) && LLVMByteOrder(td) == LLVMLittleEndian;
    if (td) LLVMDisposeTargetData(td);
    if (tm) LLVMDisposeTargetMachine(tm);
    if (fits) return 0;
    ir_fail(msg, msgn, "emit: --target %s: not a 64-bit little-endian target (emitted models need one)", s->triple);
  }
  LLVMDisposeMessage(*triple), LLVMDisposeMessage(*cpu), LLVMDisposeMessage(*feat);
  return -1;
}

static int object_of(const pl_plan *plan, const cg_aot_spec *s, const unsigned char *image, size_t image_len,
                     int64_t nio, cg_aot_result *r, char *msg, size_t msgn) {
  char *triple, *cpu, *feat;
  if (aot_target(s, &triple, &cpu, &feat, msg, msgn)) return -1;
  int gemm = s->gemm == CG_GEMM_DEFAULT ? cg_gemm_from_env(msg, msgn) : s->gemm;
  if (gemm != CG_GEMM_BLAS && gemm != CG_GEMM_GENERATED) {
    if (gemm != -1) ir_fail(msg, msgn, "emit: unknown gemm choice %d", gemm);
    LLVMDisposeMessage(triple), LLVMDisposeMessage(cpu), LLVMDisposeMessage(feat);
    return -1;
  }
  char prefix[160], entry[160];
  snprintf(prefix, sizeof prefix, "%s_", s->name);
  snprintf(entry, sizeof entry, "%s_lathe_entry", s->name);
  arena A;
  ar_init(&A);
  cg_mod m = {0};
  m.C = LLVMContextCreate();
  m.M = LLVMModuleCreateWithNameInContext(s->name, m.C);
  m.B = LLVMCreateBuilderInContext(m.C);
  m.cpu = cpu, m.features = feat, m.sym_prefix = prefix;
  m.vw = strstr(feat, "+avx512f") ? 16 : strstr(feat, "+avx") ? 8 : 4; /* as cg_jit.c's compile_into */
  m.gemm_gen = gemm == CG_GEMM_GENERATED;
  cg_mod_types(&m);
  cg_build_entry(&m, plan, &A, entry);
  char gname[200];
  snprintf(gname, sizeof gname, "%s_lathe_image", s->name);
  wrap_ctx w = {&m, add_bytes(&m, gname, image, image_len, 64), NULL, NULL};
  snprintf(gname, sizeof gname, "%s_lathe_state", s->name);
  w.state = add_bytes(&m, gname, NULL, sizeof(lathe_rt_state), 16);
  w.entry = LLVMConstBitCast(LLVMGetNamedFunction(m.M, entry), m.ptr);
  LLVMSetLinkage(LLVMGetNamedFunction(m.M, entry), LLVMInternalLinkage);
  if (s->train) emit_train_wrappers(&w, s->name, nio, s->weights_file);
  else emit_wrappers(&w, s->name, nio, s->weights_file);
  LLVMDisposeBuilder(m.B);
  cg_target t = {triple, cpu, feat, s->opt_level, 0, 0, 1, entry, 1};
  cg_objects objs = {0};
  int rc = cg_module_target(m.M, &t, msg, msgn);
  char *vmsg = NULL;
  if (rc == 0 && LLVMVerifyModule(m.M, LLVMReturnStatusAction, &vmsg))
    rc = ir_fail(msg, msgn, "emit: internal error: invalid module: %.400s", vmsg ? vmsg : "?");
  LLVMDisposeMessage(vmsg);
  if (rc) LLVMDisposeModule(m.M);
  else rc = cg_module_objects(m.M, &t, &objs, msg, msgn); /* takes the module */
  if (rc == 0 && objs.nobj != 1) rc = ir_fail(msg, msgn, "emit: internal error: %d objects for one part", objs.nobj);
  if (rc == 0) {
    r->obj_len = LLVMGetBufferSize(objs.obj[0]);
    r->obj = malloc(r->obj_len + 1);
    if (r->obj) memcpy(r->obj, LLVMGetBufferStart(objs.obj[0]), r->obj_len);
    else rc = ir_fail(msg, msgn, "emit: out of memory");
    snprintf(r->target, sizeof r->target, "%s (%s)", triple, cpu);
  }
  cg_objects_free(&objs);
  LLVMContextDispose(m.C);
  ar_free(&A);
  LLVMDisposeMessage(triple), LLVMDisposeMessage(cpu), LLVMDisposeMessage(feat);
  return rc;
}

int cg_aot_compile(const ir_graph *g, const cg_aot_spec *s, cg_aot_result *r, char *msg, size_t msgn) {
  memset(r, 0, sizeof *r);
  if (cg_init_llvm(msg, msgn) || cg_check_graph(g, msg, msgn)) return -1;
  pl_plan plan;
  if (pl_build(g, cg_plan_target(), &plan)) return ir_fail(msg, msgn, "emit: out of memory for the kernel plan");
  image_parts ip;
  memset(&ip, 0, sizeof ip);
  int rc = make_weights(g, s, &ip, msg, msgn);
  if (rc == 0 && s->train) rc = make_train(&plan, s->train, &ip, msg, msgn);
  if (rc == 0) rc = make_layout(&plan, s, &ip, msg, msgn);
  size_t ilen = 0;
  unsigned char *image = rc == 0 ? image_bytes(&ip, g, s->name, !s->weights_file, plan.const_bytes, &ilen) : NULL;
  if (rc == 0 && !image) rc = ir_fail(msg, msgn, "emit: out of memory for the image");
  if (rc == 0 && s->weights_file && !(r->wfile = wfile_bytes(&ip, &r->wfile_len)))
    rc = ir_fail(msg, msgn, "emit: out of memory for the weights file");
  r->work_bytes = ip.h.work_bytes + 64; /* room to align any pointer to 64 */
  r->nargs = ip.h.nargs;
  if (rc == 0) rc = object_of(&plan, s, image, ilen, s->train ? ip.h.nargs : ip.h.nargs + ip.h.noutputs, r, msg, msgn);
  free(image);
  parts_free(&ip);
  pl_free(&plan);
  if (rc) cg_aot_result_free(r);
  return rc;
}

void cg_aot_result_free(cg_aot_result *r) {
  free(r->obj);
  free(r->wfile);
  memset(r, 0, sizeof *r);
}
