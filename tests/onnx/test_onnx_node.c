/* test_onnx_node.c -- ONNX's own node tests (Debian's libonnx-testdata,
 * /usr/share/libonnx-testdata/data/node: 932 small models, each with inputs
 * and expected outputs): each model imported (onnx/ox_import.h, the test's
 * inputs given as known values for the slots Lathe needs constant), the .nn
 * parsed and compiled for the interpreter and the LLVM backend, run on the
 * inputs and compared with the expected outputs (|got - want| <= 1e-4 +
 * 1e-3 |want|; integers and bools exactly). Prints passed / failed /
 * unsupported per op and the total; fails when a test of
 * tests/onnx/node_expected_pass.txt does not pass on both backends.
 *   LATHE_ONNX_NODE_DIR   the suite's directory (default Debian's)
 *   LATHE_ONNX_NODE_ONLY  run only tests whose name contains this
 *   LATHE_ONNX_NODE_WRITE write the names of the passing tests to this file
 *   LATHE_ONNX_NODE_VERBOSE=1  print every failure's reason
 * Without the data it says SKIPPED. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lathe.h"
#include "onnx_io.h"
#include "ox_import.h"
#include "ox_tensor.h"
#include "runtime/runtime.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x
enum { PASS, FAIL, UNSUP };

static Onnx__TensorProto *read_pb(const char *path) {
  char *data, msg[512];
  size_t len;
  if (rt_read_file(path, &data, &len, msg, sizeof msg)) return NULL;
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, (const uint8_t *)data);
  free(data);
  return t;
}

/* an ox_array as a lathe tensor of dtype dt (the model input's) */
static int to_tensor(const ox_array *a, lathe_dtype dt, lathe_tensor *t) {
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->rank = a->rank;
  for (int i = 0; i < a->rank; i++) t->shape[i] = a->d[i];
  size_t es = lathe_dtype_size(dt);
  t->data = malloc(es * (size_t)(a->n ? a->n : 1));
  if (!t->data) return -1;
  for (int64_t i = 0; i < a->n; i++) {
    double f = ox_get_f(a, i);
    int64_t v = ox_get_i(a, i);
    switch (dt) {
    case LATHE_F32: ((float *)t->data)[i] = (float)f; break;
    case LATHE_F16: ((uint16_t *)t->data)[i] = rt_f32_to_f16((float)f); break;
    case LATHE_BF16: /* ONNX 1.12's test data holds bfloat16 as UINT16 bits */
      ((uint16_t *)t->data)[i] = a->dtype == DT(UINT16) ? (uint16_t)v : rt_f32_to_bf16((float)f);
      break;
    case LATHE_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case LATHE_I64: ((int64_t *)t->data)[i] = v; break;
    case LATHE_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case LATHE_U8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case LATHE_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    }
  }
  return 0;
}

static double get_out(const lathe_tensor *t, int64_t i) {
  switch (t->dtype) {
  case LATHE_F32: return ((const float *)t->data)[i];
  case LATHE_I64: return (double)((const int64_t *)t->data)[i];
  case LATHE_I32: return ((const int32_t *)t->data)[i];
  default: return NAN;
  }
}

/* 0 when every output matches; else a reason in why */
static int compare(const lathe_tensor *got, int got_dt, const ox_array *want, char *why, size_t n) {
  int64_t gn = lathe_tensor_numel(got);
  if (gn != want->n || got->rank != want->rank) {
    snprintf(why, n, "shape: got rank %d (%lld elements), want rank %d (%lld)", got->rank, (long long)gn, want->rank,
             (long long)want->n);
    return -1;
  }
  for (int64_t i = 0; i < gn; i++) {
    double g = get_out(got, i), w = ox_get_f(want, i);
    if (got_dt == LATHE_BF16 && want->dtype == DT(UINT16)) g = rt_f32_to_bf16((float)g); /* bits, as the data holds them */
    int ok = ox_is_float(want->dtype) ? (isnan(w) ? isnan(g) : (isinf(w) ? g == w : fabs(g - w) <= 1e-4 + 1e-3 * fabs(w)))
                                      : g == w;
    if (!ok) {
      snprintf(why, n, "element %lld: got %.9g, want %.9g", (long long)i, g, w);
      return -1;
    }
  }
  return 0;
}

/* The op a test is about: the graph's op whose name the directory starts
 * with (test_layer_normalization_..._expanded -> LayerNormalization), else
 * the first node's. */
static const char *test_op(const Onnx__ModelProto *m, const char *dir) {
  char key[256];
  size_t k = 0;
  for (const char *p = dir + 5; *p && k < sizeof key - 1; p++)
    if (*p != '_') key[k++] = (char)(*p | 0x20);
  key[k] = 0;
  const char *best = NULL;
  size_t bl = 0;
  const Onnx__GraphProto *g = m->graph;
  for (size_t i = 0; g && i < g->n_node; i++) {
    const char *op = g->node[i]->op_type;
    size_t l = 0;
    for (; op[l] && key[l] && (op[l] | 0x20) == key[l]; l++) {}
    if (!op[l] && l > bl) best = op, bl = l;
  }
  if (!best && g && g->n_node) best = g->node[0]->op_type;
  return best ? best : "?";
}

typedef struct {
  char op[64];
  int n[3];
} op_row;

static int run_one(const char *root, const char *name, char *op, size_t opn, char *why, size_t whyn, const char *wpath) {
  char path[4096], msg[2048];
  snprintf(path, sizeof path, "%s/%s/model.onnx", root, name);
  Onnx__ModelProto *m = ox_model_read(path, msg, sizeof msg);
  snprintf(op, opn, "?");
  if (!m) {
    snprintf(why, whyn, "read: %s", msg);
    return FAIL;
  }
  snprintf(op, opn, "%s", test_op(m, name));
  /* the inputs and expected outputs of data set 0 */
  Onnx__TensorProto *in[64] = {0}, *out[64] = {0};
  int nin = 0, nout = 0;
  for (; nin < 64; nin++) {
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%d.pb", root, name, nin);
    if (access(path, R_OK) || !(in[nin] = read_pb(path))) break;
  }
  for (; nout < 64; nout++) {
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/output_%d.pb", root, name, nout);
    if (access(path, R_OK) || !(out[nout] = read_pb(path))) break;
  }
  /* name the inputs as the graph's non-initializer inputs, in order */
  const Onnx__GraphProto *g = m->graph;
  int gi = 0;
  for (size_t k = 0; g && k < g->n_input && gi < nin; k++) {
    int init = 0;
    for (size_t j = 0; j < g->n_initializer; j++) init |= strcmp(g->initializer[j]->name, g->input[k]->name) == 0;
    if (init) continue;
    free(in[gi]->name);
    in[gi]->name = strdup(g->input[k]->name);
    gi++;
  }
  ox_import_options o = {.known = (const Onnx__TensorProto *const *)in, .nknown = nin};
  ox_import_result r = {0};
  int res = FAIL;
  lathe_model *lm = NULL;
  int irc = ox_import(m, &o, &r, msg, sizeof msg);
  if (irc) {
    snprintf(why, whyn, "%s", msg);
    res = irc == -2 || strstr(msg, "not supported") ? UNSUP : FAIL;
    goto done;
  }
  if (r.nout != nout || nin < gi) {
    snprintf(why, whyn, "%d outputs imported, %d expected", r.nout, nout);
    goto done;
  }
  if (rt_sft_write(wpath, r.w, r.nw, msg, sizeof msg)) {
    snprintf(why, whyn, "weights: %s", msg);
    goto done;
  }
  lathe_error err = {0};
  lm = lathe_model_parse(name, r.nn, strlen(r.nn), &err);
  if (!lm) {
    snprintf(why, whyn, "parse: %s", err.message ? err.message : "?");
    lathe_error_clear(&err);
    goto done;
  }
  res = PASS;
  for (int be = 0; be < 2 && res == PASS; be++) {
    lathe_options opt = {.backend = be ? LATHE_BACKEND_LLVM : LATHE_BACKEND_INTERP};
    lathe_program *p = lathe_compile(lm, &opt, &err);
    if (!p || (r.nw && lathe_weights_load(p, wpath, &err))) {
      snprintf(why, whyn, "%s compile: %s", be ? "llvm" : "interp", err.message ? err.message : "?");
      res = err.message && strstr(err.message, "not supported") ? UNSUP : FAIL; /* f16 on the llvm backend */
    }
    for (int i = 0; i < r.nin && res == PASS; i++) {
      const Onnx__TensorProto *t = NULL;
      for (int j = 0; j < nin; j++)
        if (strcmp(in[j]->name, r.in_onnx[i]) == 0) t = in[j];
      lathe_tensor_info info;
      int mi = -1;
      for (int j = 0; j < lathe_num_inputs(p) && r.in_nn[i]; j++)
        if (strcmp(lathe_input_name(p, j), r.in_nn[i]) == 0) mi = j;
      if (mi < 0) continue; /* read only where a constant was needed */
      lathe_input_info(p, mi, &info);
      ox_array a;
      lathe_tensor lt;
      if (!t || ox_tensor_decode(t, NULL, &a, msg, sizeof msg)) {
        snprintf(why, whyn, "input '%s': %s", r.in_onnx[i], t ? msg : "missing");
        res = FAIL;
        break;
      }
      to_tensor(&a, info.dtype, &lt);
      if (lt.rank == 0 && info.rank == 1) lt.rank = 1, lt.shape[0] = 1; /* a scalar input is declared [1] */
      if (lathe_set_input(p, r.in_nn[i], &lt, &err)) {
        snprintf(why, whyn, "set input: %s", err.message ? err.message : "?");
        res = FAIL;
      }
      free(lt.data);
      ox_array_free(&a);
    }
    if (res == PASS && lathe_run(p, &err)) {
      snprintf(why, whyn, "%s run: %s", be ? "llvm" : "interp", err.message ? err.message : "?");
      res = FAIL;
    }
    for (int k = 0; k < nout && res == PASS; k++) {
      lathe_tensor got;
      ox_array want;
      if (lathe_get_output(p, r.out_nn[k], &got, &err)) {
        snprintf(why, whyn, "output: %s", err.message ? err.message : "?");
        res = FAIL;
        break;
      }
      if (ox_tensor_decode(out[k], NULL, &want, msg, sizeof msg)) {
        snprintf(why, whyn, "expected output %d: %s", k, msg);
        res = FAIL;
      } else {
        char w2[300];
        int odt = -1;
        for (int j = 0; j < lathe_num_outputs(p); j++) {
          lathe_tensor_info oi;
          if (strcmp(lathe_output_name(p, j), r.out_nn[k]) == 0 && lathe_output_info(p, j, &oi) == 0) odt = (int)oi.dtype;
        }
        if (compare(&got, odt, &want, w2, sizeof w2)) {
          snprintf(why, whyn, "%s output %d ('%s'): %s", be ? "llvm" : "interp", k, r.out_onnx[k], w2);
          res = FAIL;
        }
        ox_array_free(&want);
      }
      lathe_tensor_free(&got);
    }
    lathe_program_free(p);
    lathe_error_clear(&err);
  }
done:
  lathe_model_free(lm);
  ox_import_free(&r);
  for (int i = 0; i < nin; i++) onnx__tensor_proto__free_unpacked(in[i], NULL);
  for (int i = 0; i < nout; i++) onnx__tensor_proto__free_unpacked(out[i], NULL);
  ox_model_free(m);
  return res;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  const char *root = getenv("LATHE_ONNX_NODE_DIR");
  if (!root) root = "/usr/share/libonnx-testdata/data/node";
  const char *only = getenv("LATHE_ONNX_NODE_ONLY"), *write = getenv("LATHE_ONNX_NODE_WRITE");
  int verbose = getenv("LATHE_ONNX_NODE_VERBOSE") != NULL;
  DIR *dir = opendir(root);
  if (!dir) {
    printf("SKIPPED (loudly): ONNX's node tests are not at %s (apt-get install libonnx-testdata)\n", root);
    return 0;
  }
  char **names = NULL;
  int nn = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (strncmp(e->d_name, "test_", 5) != 0 || (only && !strstr(e->d_name, only))) continue;
    names = realloc(names, sizeof *names * (size_t)(nn + 1));
    names[nn++] = strdup(e->d_name);
  }
  closedir(dir);
  qsort(names, (size_t)nn, sizeof *names, cmp_str);
  /* the expected passes */
  char *exp = NULL;
  size_t elen = 0;
  char msg[512];
  if (rt_read_file("tests/onnx/node_expected_pass.txt", &exp, &elen, msg, sizeof msg)) exp = NULL;
  char wpath[64];
  snprintf(wpath, sizeof wpath, "/tmp/lathe_onnx_node_%d.safetensors", (int)getpid());
  op_row *rows = calloc((size_t)nn + 1, sizeof *rows);
  int nrows = 0, tot[3] = {0}, regress = 0;
  FILE *wf = write ? fopen(write, "w") : NULL;
  for (int i = 0; i < nn; i++) {
    char op[64], why[2400] = "";
    int res = run_one(root, names[i], op, sizeof op, why, sizeof why, wpath);
    tot[res]++;
    int ri = 0;
    while (ri < nrows && strcmp(rows[ri].op, op) != 0) ri++;
    if (ri == nrows) snprintf(rows[nrows++].op, sizeof rows[0].op, "%s", op);
    rows[ri].n[res]++;
    int expected = 0;
    for (char *p = exp; p && *p && !expected;) { /* one name a line */
      size_t l = strcspn(p, "\n");
      expected = l == strlen(names[i]) && strncmp(p, names[i], l) == 0;
      p += l + (p[l] == '\n');
    }
    if (res == PASS && wf) fprintf(wf, "%s\n", names[i]);
    if (res != PASS && expected) {
      printf("REGRESSION %s (%s): %s\n", names[i], op, why);
      regress++;
    } else if (verbose && res != PASS) {
      printf("%s %s (%s): %s\n", res == FAIL ? "FAILED" : "UNSUPPORTED", names[i], op, why);
    }
  }
  if (wf) fclose(wf);
  unlink(wpath);
  printf("%-28s %6s %6s %6s\n", "op", "passed", "failed", "unsup");
  for (int i = 0; i < nrows; i++) printf("%-28s %6d %6d %6d\n", rows[i].op, rows[i].n[0], rows[i].n[1], rows[i].n[2]);
  printf("total: %d tests: %d passed on both backends, %d failed, %d unsupported; %d expected passes regressed\n", nn,
         tot[PASS], tot[FAIL], tot[UNSUP], regress);
  for (int i = 0; i < nn; i++) free(names[i]);
  free(names);
  free(rows);
  free(exp);
  return regress != 0;
}
