/* ort_run.c -- `lathe_ort`: runs an ONNX file in ONNX Runtime, the peer that
 * `lathe export` files are checked against (tests/onnx_export.sh) and the
 * second peer column of bench/run.
 *
 *   lathe_ort --version                    ONNX Runtime's version; exit 77 without it
 *   lathe_ort MODEL.onnx --in NAME=X.npy... [--out NAME=Y.npy...] [--threads N] [--opt all|none]
 *             [--bench REPS --warmup W --max-seconds S]
 *
 * The library is loaded with dlopen (tools/ort/ort_api.h says why): from
 * $LATHE_ORT_LIB, else the copy setup.sh installs (LATHE_ORT_DEFAULT), else
 * the loader's search path. When none loads, exit status 77 and one line
 * saying so: callers skip loudly on 77. Integer inputs are converted between
 * i32 and i64 to what the model declares (Lathe models take i32 tokens,
 * PyTorch's exports i64). --bench times REPS runs after W warm-up runs
 * (stopping early after S seconds) and prints one JSON line with the median
 * and the fastest run in milliseconds. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lathe.h"
#include "ort_api.h"

#ifndef LATHE_ORT_DEFAULT
#define LATHE_ORT_DEFAULT ""
#endif

enum { MAXIO = 16, EXIT_SKIP = 77 };

static const OrtApi *ort;

static const OrtApi *load_ort(const char **version) {
  const char *env = getenv("LATHE_ORT_LIB");
  const char *tries[] = {env && *env ? env : NULL, LATHE_ORT_DEFAULT, "libonnxruntime.so.1", "libonnxruntime.so"};
  for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
    if (!tries[i] || !*tries[i]) continue;
    void *h = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    const OrtApiBase *(*base)(void) = (const OrtApiBase *(*)(void))dlsym(h, "OrtGetApiBase");
    const OrtApi *api = base ? base()->GetApi(ORTX_API_VERSION) : NULL;
    if (api) {
      *version = base()->GetVersionString();
      return api;
    }
  }
  return NULL;
}

/* Print an ORT failure and release it; 1 if there was one. */
static int failed(OrtStatus *st, const char *what) {
  if (!st) return 0;
  fprintf(stderr, "lathe_ort: error: %s: %s\n", what, ort->GetErrorMessage(st));
  ort->ReleaseStatus(st);
  return 1;
}

typedef struct {
  const char *name, *file;
} io_pair;

typedef struct {
  const char *model;
  io_pair in[MAXIO], out[MAXIO];
  int nin, nout, threads, opt, reps, warmup;
  double max_seconds;
} run_args;

static int split_pair(const char *arg, io_pair *p) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1]) return -1;
  char *name = strndup(arg, (size_t)(eq - arg));
  if (!name) return -1;
  p->name = name;
  p->file = eq + 1;
  return 0;
}

static const struct { lathe_dtype lt; int ot; } DTYPES[] = {
  {LATHE_F32, ORTX_FLOAT}, {LATHE_I32, ORTX_INT32}, {LATHE_I64, ORTX_INT64}, {LATHE_I8, ORTX_INT8},
  {LATHE_U8, ORTX_UINT8}, {LATHE_BOOL, ORTX_BOOL}, {LATHE_F16, ORTX_FLOAT16}, {LATHE_BF16, ORTX_BFLOAT16},
};

static int ort_type(lathe_dtype t) {
  for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
    if (DTYPES[i].lt == t) return DTYPES[i].ot;
  return -1;
}

static int lathe_type(int t) {
  for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
    if (DTYPES[i].ot == t) return (int)DTYPES[i].lt;
  return -1;
}

/* The element type the session declares for the input called name (-1: no such input). */
static int declared_type(OrtSession *s, const char *name) {
  size_t n = 0;
  OrtAllocator *al = NULL;
  if (failed(ort->SessionGetInputCount(s, &n), "inputs") ||
      failed(ort->GetAllocatorWithDefaultOptions(&al), "allocator"))
    return -1;
  for (size_t i = 0; i < n; i++) {
    char *nm = NULL;
    if (failed(ort->SessionGetInputName(s, i, al, &nm), "input name")) return -1;
    int same = !strcmp(nm, name), type = -1;
    if (failed(ort->AllocatorFree(al, nm), "free")) return -1;
    if (!same) continue;
    OrtTypeInfo *ti = NULL;
    const OrtTensorTypeAndShapeInfo *tt = NULL;
    if (failed(ort->SessionGetInputTypeInfo(s, i, &ti), "input type")) return -1;
    if (!failed(ort->CastTypeInfoToTensorInfo(ti, &tt), "input type") && tt)
      (void)failed(ort->GetTensorElementType(tt, &type), "input type");
    ort->ReleaseTypeInfo(ti);
    return type;
  }
  fprintf(stderr, "lathe_ort: error: the model has no input called %s\n", name);
  return -1;
}

/* Convert t between i32 and i64 in place when the model wants the other. */
static int convert_int(lathe_tensor *t, int want) {
  int have = ort_type(t->dtype);
  if (have == want) return 0;
  int64_t n = lathe_tensor_numel(t);
  if (have == ORTX_INT32 && want == ORTX_INT64) {
    int64_t *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!d) return -1;
    for (int64_t i = 0; i < n; i++) d[i] = ((const int32_t *)t->data)[i];
    free(t->data), t->data = d, t->dtype = LATHE_I64;
    return 0;
  }
  if (have == ORTX_INT64 && want == ORTX_INT32) {
    int32_t *d = t->data;
    for (int64_t i = 0; i < n; i++) d[i] = (int32_t)((const int64_t *)t->data)[i];
    t->dtype = LATHE_I32;
    return 0;
  }
  fprintf(stderr, "lathe_ort: error: input of dtype %s, the model wants ONNX type %d\n", lathe_dtype_name(t->dtype),
          want);
  return -1;
}

/* Write value v to path as .npy. */
static int save_output(OrtValue *v, const char *path) {
  OrtTensorTypeAndShapeInfo *ti = NULL;
  lathe_tensor t = {0};
  size_t rank = 0;
  int type = 0;
  void *data = NULL;
  if (failed(ort->GetTensorTypeAndShape(v, &ti), "output shape")) return -1;
  int bad = failed(ort->GetDimensionsCount(ti, &rank), "output rank") || rank > LATHE_MAXDIM ||
            failed(ort->GetDimensions(ti, t.shape, rank), "output shape") ||
            failed(ort->GetTensorElementType(ti, &type), "output type") ||
            failed(ort->GetTensorMutableData(v, &data), "output data");
  ort->ReleaseTensorTypeAndShapeInfo(ti);
  if (bad || lathe_type(type) < 0) {
    if (!bad) fprintf(stderr, "lathe_ort: error: output of ONNX type %d\n", type);
    return -1;
  }
  t.rank = (int)rank;
  t.dtype = (lathe_dtype)lathe_type(type);
  t.data = data;
  lathe_error err = {0};
  if (lathe_npy_save(path, &t, &err)) {
    fprintf(stderr, "lathe_ort: error: %s\n", err.message);
    lathe_error_clear(&err);
    return -1;
  }
  return 0;
}

/* Every output of the session as a.out (names malloc'd, no files). */
static int all_outputs(OrtSession *s, run_args *a) {
  size_t n = 0;
  OrtAllocator *al = NULL;
  if (failed(ort->SessionGetOutputCount(s, &n), "outputs") ||
      failed(ort->GetAllocatorWithDefaultOptions(&al), "allocator"))
    return -1;
  for (size_t i = 0; i < n && i < MAXIO; i++) {
    char *nm = NULL;
    if (failed(ort->SessionGetOutputName(s, i, al, &nm), "output name")) return -1;
    a->out[a->nout].name = strdup(nm);
    a->out[a->nout].file = NULL;
    if (failed(ort->AllocatorFree(al, nm), "free") || !a->out[a->nout++].name) return -1;
  }
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int parse_args(int argc, char **argv, run_args *a) {
  static const struct { const char *name; int level; } OPT[] = {
    {"all", ORTX_OPT_ALL}, {"extended", ORTX_OPT_EXTENDED}, {"basic", ORTX_OPT_BASIC}, {"none", ORTX_OPT_NONE}};
  a->opt = ORTX_OPT_ALL;
  a->max_seconds = 1e9;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = s[0] == '-' && s[1] == '-';
    if (takes && !v) return fprintf(stderr, "lathe_ort: error: %s needs a value\n", s), -1;
    if (!strcmp(s, "--in") || !strcmp(s, "--out")) {
      int is_in = s[2] == 'i';
      int *n = is_in ? &a->nin : &a->nout;
      if (*n == MAXIO || split_pair(v, is_in ? &a->in[*n] : &a->out[*n]))
        return fprintf(stderr, "lathe_ort: error: %s %s: expected NAME=FILE (at most %d)\n", s, v, MAXIO), -1;
      ++*n;
    } else if (!strcmp(s, "--threads")) a->threads = atoi(v);
    else if (!strcmp(s, "--bench")) a->reps = atoi(v);
    else if (!strcmp(s, "--warmup")) a->warmup = atoi(v);
    else if (!strcmp(s, "--max-seconds")) a->max_seconds = atof(v);
    else if (!strcmp(s, "--opt")) {
      size_t k = 0;
      while (k < sizeof OPT / sizeof *OPT && strcmp(OPT[k].name, v)) k++;
      if (k == sizeof OPT / sizeof *OPT) return fprintf(stderr, "lathe_ort: error: --opt %s: all|extended|basic|none\n", v), -1;
      a->opt = OPT[k].level;
    } else if (takes) return fprintf(stderr, "lathe_ort: error: unknown flag %s\n", s), -1;
    else if (!a->model) { a->model = s; continue; }
    else return fprintf(stderr, "lathe_ort: error: a second model %s\n", s), -1;
    i++;
  }
  if (!a->model) return fprintf(stderr, "usage: lathe_ort MODEL.onnx --in NAME=X.npy ... [--out NAME=Y.npy ...]\n"), -1;
  return 0;
}

static OrtSession *open_session(OrtEnv *env, const run_args *a) {
  OrtSessionOptions *so = NULL;
  OrtSession *s = NULL;
  if (failed(ort->CreateSessionOptions(&so), "session options")) return NULL;
  int bad = failed(ort->SetSessionGraphOptimizationLevel(so, a->opt), "optimisation level") ||
            failed(ort->SetSessionExecutionMode(so, ORTX_SEQUENTIAL), "execution mode") ||
            (a->threads > 0 && failed(ort->SetIntraOpNumThreads(so, a->threads), "threads")) ||
            failed(ort->SetInterOpNumThreads(so, 1), "threads") ||
            failed(ort->CreateSession(env, a->model, so, &s), a->model);
  ort->ReleaseSessionOptions(so);
  return bad ? NULL : s;
}

/* Time a->reps runs; one JSON line on stdout. */
static int bench(OrtSession *s, const run_args *a, const char **in_names, OrtValue **in, const char **out_names) {
  double *ms = calloc((size_t)a->reps, sizeof *ms), start = now_ms();
  int done = 0;
  if (!ms) return -1;
  for (int r = -a->warmup; r < a->reps; r++) {
    OrtValue *out[MAXIO] = {0};
    double t0 = now_ms();
    int bad = failed(ort->Run(s, NULL, in_names, (const OrtValue *const *)in, (size_t)a->nin, out_names,
                              (size_t)a->nout, out), "run");
    double t1 = now_ms();
    for (int k = 0; k < a->nout; k++) ort->ReleaseValue(out[k]);
    if (bad) { free(ms); return -1; }
    if (r >= 0) ms[done++] = t1 - t0;
    if (r >= 0 && (t1 - start) / 1e3 > a->max_seconds) break;
  }
  qsort(ms, (size_t)done, sizeof *ms, cmp_double);
  printf("{\"threads\": %d, \"reps\": %d, \"median_ms\": %.6f, \"min_ms\": %.6f}\n", a->threads, done,
         done % 2 ? ms[done / 2] : (ms[done / 2 - 1] + ms[done / 2]) / 2, ms[0]);
  free(ms);
  return 0;
}

int main(int argc, char **argv) {
  const char *version = NULL;
  run_args a = {0};
  int want_version = argc == 2 && !strcmp(argv[1], "--version");
  if (!want_version && parse_args(argc, argv, &a)) return 2;
  if (!(ort = load_ort(&version))) {
    fprintf(stderr, "lathe_ort: ONNX Runtime not found (set LATHE_ORT_LIB, or run ./setup.sh: it installs the npm "
                    "package onnxruntime-node)\n");
    return EXIT_SKIP;
  }
  if (want_version) return printf("onnxruntime %s\n", version), 0;
  OrtEnv *env = NULL;
  OrtMemoryInfo *mem = NULL;
  OrtSession *s = NULL;
  lathe_tensor t[MAXIO] = {{0}};
  OrtValue *in[MAXIO] = {0}, *out[MAXIO] = {0};
  const char *in_names[MAXIO], *out_names[MAXIO];
  int rc = 1;
  if (failed(ort->CreateEnv(ORTX_LOG_ERROR, "lathe_ort", &env), "environment") ||
      failed(ort->CreateCpuMemoryInfo(ORTX_ARENA_ALLOCATOR, ORTX_MEM_DEFAULT, &mem), "memory info") ||
      !(s = open_session(env, &a)))
    goto done;
  for (int i = 0; i < a.nin; i++) {
    lathe_error err = {0};
    in_names[i] = a.in[i].name;
    if (lathe_npy_load(a.in[i].file, &t[i], &err)) {
      fprintf(stderr, "lathe_ort: error: %s\n", err.message);
      lathe_error_clear(&err);
      goto done;
    }
    int want = declared_type(s, a.in[i].name);
    if (want < 0 || convert_int(&t[i], want) ||
        failed(ort->CreateTensorWithDataAsOrtValue(mem, t[i].data, lathe_tensor_bytes(&t[i]), t[i].shape,
                                                   (size_t)t[i].rank, ort_type(t[i].dtype), &in[i]), a.in[i].file))
      goto done;
  }
  for (int i = 0; i < a.nout; i++) out_names[i] = a.out[i].name;
  if (!a.nout && all_outputs(s, &a)) goto done; /* no --out: run (and time) every output, save none */
  for (int i = 0; i < a.nout; i++) out_names[i] = a.out[i].name;
  if (a.reps > 0) {
    rc = bench(s, &a, in_names, in, out_names) ? 1 : 0;
    goto done;
  }
  if (failed(ort->Run(s, NULL, in_names, (const OrtValue *const *)in, (size_t)a.nin, out_names, (size_t)a.nout, out),
             "run"))
    goto done;
  rc = 0;
  for (int i = 0; i < a.nout; i++)
    if (a.out[i].file && save_output(out[i], a.out[i].file)) rc = 1;
done:
  for (int i = 0; i < MAXIO; i++) {
    if (out[i]) ort->ReleaseValue(out[i]);
    if (in[i]) ort->ReleaseValue(in[i]);
    lathe_tensor_free(&t[i]);
  }
  for (int i = 0; i < a.nin; i++) free((void *)a.in[i].name);
  for (int i = 0; i < a.nout; i++) free((void *)a.out[i].name);
  if (s) ort->ReleaseSession(s);
  if (mem) ort->ReleaseMemoryInfo(mem);
  if (env) ort->ReleaseEnv(env);
  return rc;
}
