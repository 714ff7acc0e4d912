/* api_emit.c -- `lathe emit`: a compiled program's forward pass written
 * ahead of time as DIR/MODEL.o, DIR/libMODEL.a (the object with a symbol
 * index, so any linker takes it) and DIR/MODEL.h (every shape, dtype and
 * function, the link line), and with a weights file DIR/MODEL.weights.
 * The object comes from codegen/llvm/cg_aot.c with the program's graph
 * (after the same passes `lathe run` applies), its weights and the
 * normalisation they carry; each file is written atomically. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "passes/optimizer.h"
#include "rt/rt_image.h"
#include "runtime/program.h"
#include "runtime/runtime.h"
#include "runtime/train.h"

/* ---- the header ---- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
  va_list ap;
  for (int tries = 0; tries < 2 && !t->oom; tries++) {
    va_start(ap, fmt);
    int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) { t->oom = 1; return; }
    if (t->s && t->len + (size_t)n < t->cap) { t->len += (size_t)n; return; }
    size_t cap = (t->cap + (size_t)n + 1) * 2;
    char *s = realloc(t->s, cap);
    if (!s) { t->oom = 1; return; }
    t->s = s, t->cap = cap;
  }
}

static const char *c_type(ir_dtype t) {
  static const char *const names[IR_NDTYPES] = {[IR_F32] = "float",  [IR_F16] = "uint16_t", [IR_BF16] = "uint16_t",
                                                [IR_I32] = "int32_t", [IR_I64] = "int64_t",  [IR_I8] = "int8_t",
                                                [IR_U8] = "uint8_t",  [IR_BOOL] = "uint8_t"};
  return (int)t >= 0 && t < IR_NDTYPES && names[t] ? names[t] : "uint8_t";
}

static void put_shape(text *t, const ir_shape *s) {
  char buf[160];
  ir_shape_str(s, buf, sizeof buf);
  put(t, "%s, %lld values", buf, (long long)ir_numel(s));
}

/* UPMODEL_NAME_NUMEL and UPMODEL_NAME_SHAPE ({d0, d1, ...}) for a tensor */
static void put_dims(text *t, const char *up, const char *name, const ir_shape *s) {
  char un[128];
  size_t i = 0;
  for (; name[i] && i + 1 < sizeof un; i++) un[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
  un[i] = '\0';
  put(t, "#define %s_%s_NUMEL %lld\n#define %s_%s_SHAPE {", up, un, (long long)ir_numel(s), up, un);
  for (int d = 0; d < s->rank; d++) put(t, "%s%lld", d ? ", " : "", (long long)s->d[d]);
  put(t, "}\n");
}

static void header_io(text *t, const ir_graph *g, const char *M, const char *up, const lathe_program *p) {
  put(t, "/* Inputs (dense row-major, the bound static shapes; raw features: the normalisation the\n"
         " * weights carry is applied inside):\n");
  for (int i = 0; i < g->ninputs; i++) {
    const ir_input *x = &g->inputs[i];
    if (x->is_target) continue;
    lathe_preprocess pp;
    put(t, " *   %-12s %s", x->name, ir_dtype_name(x->dtype));
    put_shape(t, &x->shape);
    put(t, "%s\n", lathe_input_preprocess(p, x->name, &pp) && pp.shift ? " (normalised inside)" : "");
  }
  put(t, " * Outputs:\n");
  for (int j = 0; j < g->noutputs; j++) {
    const ir_node *n = &g->nodes[g->outputs[j].node];
    put(t, " *   %-12s %s", g->outputs[j].name, ir_dtype_name(n->dtype));
    put_shape(t, &n->shape);
    put(t, "\n");
  }
  put(t, " */\n");
  for (int i = 0; i < g->ninputs; i++)
    if (!g->inputs[i].is_target) put_dims(t, up, g->inputs[i].name, &g->inputs[i].shape);
  for (int j = 0; j < g->noutputs; j++) put_dims(t, up, g->outputs[j].name, &g->nodes[g->outputs[j].node].shape);
  put(t, "\ntypedef struct {\n");
  for (int i = 0; i < g->ninputs; i++)
    if (!g->inputs[i].is_target) put(t, "  const %s *%s;\n", c_type(g->inputs[i].dtype), g->inputs[i].name);
  put(t, "} %s_inputs;\n\ntypedef struct {\n", M);
  for (int j = 0; j < g->noutputs; j++)
    put(t, "  %s *%s;\n", c_type(g->nodes[g->outputs[j].node].dtype), g->outputs[j].name);
  put(t, "} %s_outputs;\n\n", M);
}

/* The header's link line: which run-time library the object needs, and
 * whether OpenBLAS may be left out (both entries, forward and train_step). */
static void put_link_line(text *t, const char *M, const api_emit_opts *o) {
  if (o->gemm == CG_GEMM_GENERATED) {
    put(t, " *\n * Link: cc prog.c -I DIR -L DIR -l%s -llathe_rt_noblas -lm -lpthread\n", M);
    put(t, " * (--gemm generated: the matrix products are in the object, no BLAS; liblathe_rt_noblas holds\n"
            " * the thread pool and kernels the code calls; no LLVM, no Lathe compiler%s).\n",
        o->triple ? ". For another CPU, compile\n * the .c files of liblathe_rt (rt/) with its C compiler and -DLATHE_RT_NOBLAS" : "");
  } else {
    put(t, " *\n * Link: cc prog.c -I DIR -L DIR -l%s -llathe_rt -Wl,--as-needed -lopenblas -lm -lpthread\n", M);
    put(t, " * (liblathe_rt holds the thread pool and kernels the code calls; no LLVM, no Lathe compiler;\n"
            " * --as-needed leaves OpenBLAS out when the model makes no BLAS call).\n");
  }
}

static char *header_text(const lathe_program *p, const char *M, const cg_aot_result *r, const api_emit_opts *o) {
  int weights_file = o->weights_file;
  const ir_graph *g = &p->g;
  text t = {0};
  char up[128];
  size_t i = 0;
  for (; M[i] && i + 1 < sizeof up; i++) up[i] = (char)(M[i] >= 'a' && M[i] <= 'z' ? M[i] - 32 : M[i]);
  up[i] = '\0';
  put(&t, "/* %s.h -- model '%s' compiled ahead of time by `lathe emit` for %s.\n", M, g->model_name, r->target);
  put_link_line(&t, M, o);
  put(&t, " * All functions return 0 on success, else a code lathe_rt_strerror() explains.\n */\n");
  put(&t, "#ifndef LATHE_EMIT_%s_H\n#define LATHE_EMIT_%s_H\n\n#include <stdint.h>\n\n", up, up);
  put(&t, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  header_io(&t, g, M, up, p);
  put(&t, "/* Bytes of workspace %s_forward_ws needs (any alignment). */\n", M);
  put(&t, "#define %s_WORKSPACE_BYTES ((size_t)%lldu)\n\n", up, (long long)r->work_bytes);
  put(&t, "/* One forward pass: inputs then outputs in the model file's order. Uses a workspace\n"
          " * allocated on the first call (not reentrant: threads use %s_forward_ws). */\nint %s_forward(", M, M);
  const char *sep = "";
  for (int k = 0; k < g->ninputs; k++)
    if (!g->inputs[k].is_target)
      put(&t, "%sconst %s *%s", sep, c_type(g->inputs[k].dtype), g->inputs[k].name), sep = ", ";
  for (int j = 0; j < g->noutputs; j++)
    put(&t, "%s%s *%s", sep, c_type(g->nodes[g->outputs[j].node].dtype), g->outputs[j].name), sep = ", ";
  put(&t, ");\n\n/* The same with the caller's workspace (%s_WORKSPACE_BYTES): allocates nothing. */\n", up);
  put(&t, "int %s_forward_ws(const %s_inputs *in, %s_outputs *out, void *workspace);\n\n", M, M, M);
  put(&t, "/* Threads of the parallel loops (default 1; LATHE_THREADS=N in the environment also sets it).\n"
          " * Returns the count in effect. */\nint %s_set_threads(int n);\n\n", M);
  if (weights_file)
    put(&t, "/* Read the weights (%s.weights, written by `lathe emit --weights-file`): names, shapes and\n"
            " * checksum are checked; call before %s_forward. lathe_rt_last_error() says what failed. */\n"
            "int %s_load_weights(const char *path);\n\n", M, M, M);
  put(&t, "/* liblathe_rt: the words for a return code; the last weights-loading failure. */\n");
  put(&t, "const char *lathe_rt_strerror(int code);\nconst char *lathe_rt_last_error(void);\n\n");
  put(&t, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

/* ---- --entry train_step: the header ---- */

static int64_t up64(int64_t n) { return (n + 63) / 64 * 64; }

/* A tensor's name as a C member name: other characters become '_', leading
 * underscores go (reserved names), a clash gets the tensor's number. */
static void member_name(const char *name, int k, char names[][LATHE_RT_NAME + 16], char *out) {
  while (*name == '_') name++;
  size_t n = 0;
  if (*name >= '0' && *name <= '9') out[n++] = 't';
  for (; *name && n < LATHE_RT_NAME; name++)
    out[n++] = (char)((*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') || (*name >= '0' && *name <= '9')
                          ? *name : '_');
  out[n] = '\0';
  static const char *const head[] = {"step", "steps_per_epoch", "total_steps", "reserved_"};
  int clash = n == 0;
  for (size_t h = 0; h < sizeof head / sizeof head[0]; h++) clash |= !strcmp(out, head[h]);
  for (int j = 0; j < k; j++) clash |= !strcmp(out, names[j]);
  if (clash) snprintf(out + n, 16, "_%d", k);
}

/* The state struct: the head, then every tensor of the image's weights
 * section (parameters and optimizer state, then each carried
 * normalisation's shift and scale), each padded to 64 bytes as cg_aot.c
 * lays the section out; the header checks its size. */
static void train_state(text *t, const lathe_program *p, const char *M, const char *up) {
  const ir_graph *g = &p->g;
  int nt = g->nparams;
  for (int i = 0; i < g->ninputs; i++) {
    lathe_preprocess pp;
    nt += lathe_input_preprocess(p, g->inputs[i].name, &pp) && pp.shift ? 2 : 0;
  }
  char(*names)[LATHE_RT_NAME + 16] = calloc((size_t)nt + 1, sizeof *names);
  if (!names) { t->oom = 1; return; }
  put(t, "/* The training state: the head (liblathe_rt's lathe_rt_train_head), then each parameter and\n"
         " * optimizer-state tensor (f32, row-major) and the normalisation the weights carry, each at a\n"
         " * multiple of 64 bytes. %s_state_init fills it; it is plain memory (malloc it or make it\n"
         " * static: it is %s_STATE_BYTES long), and one state is one model being trained. */\n", M, up);
  put(t, "typedef struct {\n  int64_t step;            /* steps taken (the schedule and Adam's bias corrections use it) */\n"
         "  int64_t steps_per_epoch; /* step and exponential schedules: steps in an epoch (0: all in epoch 1) */\n"
         "  int64_t total_steps;     /* the cosine schedule: the run's steps (0: unknown, no decay) */\n"
         "  int64_t reserved_[5];\n");
  int64_t bytes = 64;
  int k = 0, pad = 0;
  for (int i = 0; i < g->nparams + g->ninputs; i++) {
    const char *name = NULL;
    ir_shape s = {0};
    char pre[LATHE_RT_NAME + 32];
    lathe_preprocess pp;
    for (int half = 0; half < 2; half++) {
      if (i < g->nparams) {
        if (half) break;
        name = g->params[i].name, s = g->params[i].shape;
      } else {
        const ir_input *x = &g->inputs[i - g->nparams];
        if (!lathe_input_preprocess(p, x->name, &pp) || !pp.shift) break;
        snprintf(pre, sizeof pre, "__preprocess.%s.%s", x->name, half ? "scale" : "shift");
        name = pre, s = (ir_shape){.rank = 1, .d = {pp.width}};
      }
      member_name(name, k, names, names[k]);
      char sh[160];
      ir_shape_str(&s, sh, sizeof sh);
      int64_t n = ir_numel(&s);
      put(t, "  float %s[%lld]; /* %s f32%s */\n", names[k], (long long)(n ? n : 1), name, sh);
      int64_t padn = (up64(n * 4) - (n ? n : 1) * 4) / 4;
      if (padn > 0) put(t, "  float pad%d_[%lld];\n", pad++, (long long)padn);
      bytes += up64(n * 4);
      k++;
    }
  }
  free(names);
  put(t, "} %s_state;\n\n#define %s_STATE_BYTES ((size_t)%lldu)\n", M, up, (long long)bytes);
  put(t, "#ifndef __cplusplus\n_Static_assert(sizeof(%s_state) == %s_STATE_BYTES, \"%s_state's layout\");\n#endif\n\n",
      M, up, M);
}

static char *train_header_text(const lathe_program *p, const char *M, const cg_aot_result *r,
                               const api_emit_opts *o, int weights_file) {
  const ir_graph *g = &p->g;
  text t = {0};
  char up[128];
  size_t i = 0;
  for (; M[i] && i + 1 < sizeof up; i++) up[i] = (char)(M[i] >= 'a' && M[i] <= 'z' ? M[i] - 32 : M[i]);
  up[i] = '\0';
  put(&t, "/* %s.h -- model '%s': one step of its train block (forward, backward, optimizer update)\n"
          " * compiled ahead of time by `lathe emit --entry train_step` for %s.\n", M, g->model_name, r->target);
  put_link_line(&t, M, o);
  put(&t, " * The int functions return 0 on success, else a code lathe_rt_strerror() explains;\n"
          " * lathe_rt_last_error() says what failed in words.\n */\n");
  put(&t, "#ifndef LATHE_EMIT_%s_H\n#define LATHE_EMIT_%s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", up, up);
  put(&t, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  const ir_train *tr = &p->train;
  static const char *const opt[] = {"none", "sgd", "adam", "adamw", "rmsprop"};
  static const char *const sched[] = {"constant", "step", "cosine", "exponential"};
  put(&t, "/* The train block: %s, lr %g (%s schedule), seed %lld.\n", (int)tr->opt >= 0 && tr->opt <= IR_OPT_RMSPROP
      ? opt[tr->opt] : "?", tr->lr, (int)tr->sched >= 0 && tr->sched <= IR_SCHED_EXPONENTIAL ? sched[tr->sched] : "?",
      (long long)tr->seed);
  put(&t, " * Data arguments of %s_train_step (dense row-major, the bound static shapes; raw features:\n"
          " * the normalisation the weights carry is applied inside), inputs then targets:\n", M);
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < g->ninputs; k++) {
      const ir_input *x = &g->inputs[k];
      if (x->is_target != pass || x->name[0] == '_') continue;
      lathe_preprocess pp;
      put(&t, " *   %-12s %s", x->name, ir_dtype_name(x->dtype));
      put_shape(&t, &x->shape);
      put(&t, "%s%s\n", pass ? " (target)" : "", lathe_input_preprocess(p, x->name, &pp) && pp.shift ? " (normalised inside)" : "");
    }
  put(&t, " */\n");
  for (int k = 0; k < g->ninputs; k++)
    if (g->inputs[k].name[0] != '_') put_dims(&t, up, g->inputs[k].name, &g->inputs[k].shape);
  put(&t, "\n");
  train_state(&t, p, M, up);
  put(&t, "/* Copy the emitted weights into the state (optimizer state zero, step 0)%s%s%s. */\n"
          "int %s_state_init(%s_state *st);\n\n", weights_file ? ": those " : "", weights_file ? M : "",
      weights_file ? "_load_weights read" : "", M, M);
  put(&t, "/* One training step on one batch: the loss before the update, or NaN when the step failed (a\n"
          " * label out of range, a non-finite loss or update: the state is then unchanged, and\n"
          " * lathe_rt_last_error() says why). Uses a workspace allocated on the first call: one thread\n"
          " * at a time. */\nfloat %s_train_step(%s_state *st", M, M);
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < g->ninputs; k++)
      if (g->inputs[k].is_target == pass && g->inputs[k].name[0] != '_')
        put(&t, ", const %s *%s", c_type(g->inputs[k].dtype), g->inputs[k].name);
  put(&t, ");\n\n");
  put(&t, "/* The state as a safetensors file with the tensor names of lathe train's checkpoints (weights,\n"
          " * \"opt.*\" state, \"__preprocess.*\", \"__meta.step\"): lathe eval reads it, lathe train --resume\n"
          " * continues from it (as DIR/last.safetensors and DIR/best.safetensors); written atomically. */\n"
          "int %s_state_save(const %s_state *st, const char *path);\n", M, M);
  put(&t, "/* Read a state file, a lathe train checkpoint or weights (every parameter, f32 of its shape;\n"
          " * optimizer state absent: zero; the step from \"__meta.step\", else 0). Every check comes first:\n"
          " * a refused file changes nothing. */\nint %s_state_load(%s_state *st, const char *path);\n\n", M, M);
  put(&t, "/* Threads of the parallel loops (default 1; LATHE_THREADS=N in the environment also sets it). */\n"
          "int %s_set_threads(int n);\n\n", M);
  if (weights_file)
    put(&t, "/* Read the weights (%s.weights, written by `lathe emit --weights-file`): names, shapes and\n"
            " * checksum are checked; call before %s_state_init. */\nint %s_load_weights(const char *path);\n\n",
        M, M, M);
  put(&t, "const char *lathe_rt_strerror(int code);\nconst char *lathe_rt_last_error(void);\n\n");
  put(&t, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

/* The spec's training part: each input's role, the normalisation each
 * carries, the parameter each output commits to, the block's settings. */
static int train_spec(const lathe_program *p, cg_aot_train *t, lathe_error *err) {
  const ir_graph *g = &p->g;
  static const struct {
    const char *name;
    int role;
  } scalars[] = {{OPT_IN_LR, LATHE_RT_IN_LR}, {OPT_IN_BC1, LATHE_RT_IN_BC1}, {OPT_IN_BC2, LATHE_RT_IN_BC2},
                 {OPT_IN_NOISE, LATHE_RT_IN_NOISE}, {OPT_IN_RNG, LATHE_RT_IN_RNG}};
  int *role = calloc((size_t)g->ninputs + 1, sizeof *role), *kind = calloc((size_t)g->ninputs + 1, sizeof *kind);
  t->role = role, t->norm_kind = kind, t->commit = p->commit;
  if (!role || !kind) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < g->ninputs; i++) {
    const ir_input *x = &g->inputs[i];
    role[i] = x->is_target ? LATHE_RT_IN_TARGET : LATHE_RT_IN_ARG;
    for (size_t k = 0; k < sizeof scalars / sizeof scalars[0]; k++)
      if (!strcmp(x->name, scalars[k].name)) role[i] = scalars[k].role;
    if (role[i] > LATHE_RT_IN_TARGET && ir_numel(&x->shape) != 1)
      return api_fail(err, LATHE_EINTERNAL, "emit: internal error: per-step input '%s' is not a scalar", x->name);
    lathe_preprocess pp;
    kind[i] = lathe_input_preprocess(p, x->name, &pp) ? (int)pp.kind : -1;
  }
  lathe_rt_sched s;
  tr_rt_sched(&p->train, &s);
  t->nparams = g->nparams, t->seed = p->train.seed;
  t->beta1 = p->train.beta1, t->beta2 = p->train.beta2, t->grad_noise = p->train.grad_noise;
  t->sched = s.kind, t->lr = s.lr, t->gamma = s.gamma, t->every = s.every, t->warmup = s.warmup, t->min_lr = s.min_lr;
  return 0;
}

int api_emit_weights(lathe_program *p, const char *path, lathe_error *err) {
  if (!p->is_train) return lathe_weights_load(p, path, err);
  /* a training step: the weights (optimizer state zero, as lathe train --weights) and the
   * normalisation they carry, which the step applies and the state's files keep */
  rt_st_file f = {0};
  char msg[1024];
  api_pre *pre = NULL;
  if (api_alloc_params(p, err) || tr_weights_load(path, p, err)) return -1;
  if (rt_st_read(path, &f, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  int rc = api_pre_read(p, path, &f, &pre, err);
  rt_st_free(&f);
  if (rc) return rc;
  api_pre_replace(p, pre);
  p->weights_set = 1;
  api_params_changed(p);
  return 0;
}

/* ---- the archive: one member and a GNU symbol index naming its API ---- */

static void ar_header(char *h, const char *name, size_t size) {
  char tmp[61];
  snprintf(tmp, sizeof tmp, "%-16s%-12s%-6s%-6s%-8s%-10zu`\n", name, "0", "0", "0", "644", size);
  memcpy(h, tmp, 60);
}

static unsigned char *archive(const cg_aot_result *r, const char *M, int weights_file, int train, size_t *len) {
  static const char *const fwd[] = {"forward", "forward_ws", "set_threads", "load_weights"};
  static const char *const trn[] = {"train_step", "state_init", "state_save", "state_load", "set_threads",
                                    "load_weights"};
  const char *const *api = train ? trn : fwd;
  int nsym = (train ? 5 : 3) + (weights_file != 0);
  char names[6][160];
  size_t names_len = 0;
  for (int i = 0; i < nsym; i++) {
    snprintf(names[i], sizeof names[i], "%s_%s", M, api[i]);
    names_len += strlen(names[i]) + 1;
  }
  size_t index_len = 4 + 4 * (size_t)nsym + names_len, index_pad = index_len % 2;
  size_t member_at = 8 + 60 + index_len + index_pad, obj_pad = r->obj_len % 2;
  *len = member_at + 60 + r->obj_len + obj_pad;
  unsigned char *b = calloc(*len + 1, 1);
  if (!b) return NULL;
  memcpy(b, "!<arch>\n", 8);
  ar_header((char *)b + 8, "/", index_len);
  unsigned char *q = b + 68;
  uint32_t be[2] = {(uint32_t)nsym, (uint32_t)member_at};
  for (int k = 0; k < 1 + nsym; k++) { /* big-endian: the count, then each symbol's member */
    uint32_t v = be[k ? 1 : 0];
    q[0] = (unsigned char)(v >> 24), q[1] = (unsigned char)(v >> 16), q[2] = (unsigned char)(v >> 8), q[3] = (unsigned char)v;
    q += 4;
  }
  for (int i = 0; i < nsym; i++) q += strlen(strcpy((char *)q, names[i])) + 1;
  if (index_pad) *q = '\n';
  ar_header((char *)b + member_at, "model.o/", r->obj_len);
  memcpy(b + member_at + 60, r->obj, r->obj_len);
  if (obj_pad) b[member_at + 60 + r->obj_len] = '\n';
  return b;
}

/* ---- the files ---- */

static int is_c_name(const char *s) {
  if (!s || !*s || (*s >= '0' && *s <= '9')) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

static int out_dir(const char *dir, lathe_error *err) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return api_fail(err, LATHE_EUSER, "emit: '%s' exists and is not a directory", dir);
    return 0;
  }
  if (mkdir(dir, 0777) != 0)
    return api_fail(err, LATHE_EUSER, "emit: cannot create the output directory '%s': %s", dir, strerror(errno));
  return 0;
}

static int write_file(const char *dir, const char *fmt, const char *M, const void *data, size_t len, lathe_error *err) {
  char path[4096], name[512], msg[1024];
  snprintf(name, sizeof name, fmt, M);
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
    return api_fail(err, LATHE_EUSER, "emit: output path too long");
  rt_chunk c = {data, len};
  if (rt_write_atomic(path, &c, 1, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "emit: %s", msg);
  return 0;
}

/* The spec's arrays: the weights and, per input, the normalisation. */
static int spec_of(const lathe_program *p, cg_aot_spec *s, lathe_error *err) {
  const ir_graph *g = &p->g;
  size_t n = (size_t)g->ninputs + 1;
  const float **shift = calloc(n, sizeof *shift), **scale = calloc(n, sizeof *scale);
  int64_t *width = calloc(n, sizeof *width);
  s->shift = shift, s->scale = scale, s->width = width;
  s->params = (const float *const *)p->params;
  if (!shift || !scale || !width) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < g->ninputs; i++) {
    lathe_preprocess pp;
    if (!lathe_input_preprocess(p, g->inputs[i].name, &pp) || !pp.shift) continue;
    shift[i] = pp.shift, scale[i] = pp.scale, width[i] = pp.width;
  }
  return 0;
}

int api_emit(const lathe_program *p, const char *dir, const api_emit_opts *opts, lathe_error *err) {
  api_emit_opts o = *opts;
  int weights_file = o.weights_file;
  char msg[1024];
  if (o.gemm == CG_GEMM_DEFAULT && (o.gemm = cg_gemm_from_env(msg, sizeof msg)) < 0)
    return api_fail(err, LATHE_EUSER, "emit: %s", msg);
  const char *M = p->g.model_name;
  if (!is_c_name(M) || strlen(M) > 100)
    return api_fail(err, LATHE_EUSER, "emit: model name '%s' is not usable as a C identifier prefix", M);
  if (!p->cg) return api_fail(err, LATHE_EUSER, "emit: the program was not compiled for the llvm backend");
  if (!p->weights_set) return api_fail(err, LATHE_EUSER, "emit: the program has no weights (give --weights)");
  if (out_dir(dir, err)) return LATHE_EUSER;
  cg_aot_spec s = {.name = M, .weights_file = weights_file, .opt_level = 2, /* as compile_llvm's cg_compile */
                   .triple = o.triple, .cpu = o.cpu, .gemm = o.gemm};
  cg_aot_result r;
  memset(&r, 0, sizeof r);
  cg_aot_train tr = {0};
  int rc = spec_of(p, &s, err);
  if (rc == 0 && p->is_train) rc = train_spec(p, &tr, err), s.train = &tr;
  if (rc == 0 && cg_aot_compile(&p->g, &s, &r, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  free((void *)s.shift), free((void *)s.scale), free((void *)s.width);
  free((void *)tr.role), free((void *)tr.norm_kind);
  if (rc) return rc;
  size_t alen = 0;
  unsigned char *ar = archive(&r, M, weights_file, p->is_train, &alen);
  char *h = p->is_train ? train_header_text(p, M, &r, &o, weights_file) : header_text(p, M, &r, &o);
  if (!ar || !h) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
  if (rc == 0) rc = write_file(dir, "%s.o", M, r.obj, r.obj_len, err);
  if (rc == 0) rc = write_file(dir, "lib%s.a", M, ar, alen, err);
  if (rc == 0 && weights_file) rc = write_file(dir, "%s.weights", M, r.wfile, r.wfile_len, err);
  if (rc == 0) rc = write_file(dir, "%s.h", M, h, strlen(h), err);
  free(ar);
  free(h);
  cg_aot_result_free(&r);
  return rc;
}
