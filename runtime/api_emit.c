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

#include "runtime/program.h"
#include "runtime/runtime.h"

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

static char *header_text(const lathe_program *p, const char *M, const cg_aot_result *r, int weights_file) {
  const ir_graph *g = &p->g;
  text t = {0};
  char up[128];
  size_t i = 0;
  for (; M[i] && i + 1 < sizeof up; i++) up[i] = (char)(M[i] >= 'a' && M[i] <= 'z' ? M[i] - 32 : M[i]);
  up[i] = '\0';
  put(&t, "/* %s.h -- model '%s' compiled ahead of time by `lathe emit` for %s.\n", M, g->model_name, r->target);
  put(&t, " *\n * Link: cc prog.c -I DIR -L DIR -l%s -llathe_rt -Wl,--as-needed -lopenblas -lm -lpthread\n", M);
  put(&t, " * (liblathe_rt holds the thread pool and kernels the code calls; no LLVM, no Lathe compiler;\n"
          " * --as-needed leaves OpenBLAS out when the model makes no BLAS call).\n");
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

/* ---- the archive: one member and a GNU symbol index naming its API ---- */

static void ar_header(char *h, const char *name, size_t size) {
  char tmp[61];
  snprintf(tmp, sizeof tmp, "%-16s%-12s%-6s%-6s%-8s%-10zu`\n", name, "0", "0", "0", "644", size);
  memcpy(h, tmp, 60);
}

static unsigned char *archive(const cg_aot_result *r, const char *M, int weights_file, size_t *len) {
  static const char *const api[] = {"forward", "forward_ws", "set_threads", "load_weights"};
  int nsym = weights_file ? 4 : 3;
  char names[4][160];
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

int api_emit(const lathe_program *p, const char *dir, int weights_file, lathe_error *err) {
  const char *M = p->g.model_name;
  if (!is_c_name(M) || strlen(M) > 100)
    return api_fail(err, LATHE_EUSER, "emit: model name '%s' is not usable as a C identifier prefix", M);
  if (!p->cg) return api_fail(err, LATHE_EUSER, "emit: the program was not compiled for the llvm backend");
  if (!p->weights_set) return api_fail(err, LATHE_EUSER, "emit: the program has no weights (give --weights)");
  if (out_dir(dir, err)) return LATHE_EUSER;
  cg_aot_spec s = {.name = M, .weights_file = weights_file, .opt_level = 2}; /* as compile_llvm's cg_compile */
  cg_aot_result r;
  memset(&r, 0, sizeof r);
  int rc = spec_of(p, &s, err);
  char msg[1024];
  if (rc == 0 && cg_aot_compile(&p->g, &s, &r, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  free((void *)s.shift), free((void *)s.scale), free((void *)s.width);
  if (rc) return rc;
  size_t alen = 0;
  unsigned char *ar = archive(&r, M, weights_file, &alen);
  char *h = header_text(p, M, &r, weights_file);
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
