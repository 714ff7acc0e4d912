/* lathe_bench.c -- times one workload with Lathe's public API.
 *
 *   lathe_bench MODEL [--bind NAME=N]... [--in NAME=DTYPE:D0xD1x...[:RANGE]]...
 *               [--reps N] [--warmup N] [--max-seconds S] [--seed S] [--compile-only] [--train]
 *               [--backend llvm|cuda] [--zero-copy]
 *
 * Loads MODEL, binds its dimensions, compiles it with the LLVM backend (the
 * wall clock around lathe_compile is the compile time), initialises the
 * weights, fills every --in input with seeded random data (integers uniform
 * in [0, RANGE)), warms up, then times N steps and prints one JSON object on
 * stdout. A step is lathe_set_input for every input plus lathe_run: what an
 * inference loop pays per batch; reading the outputs back is not timed.
 * --zero-copy binds the inputs once instead (lathe_bind_input) and times
 * lathe_run alone, as lathe_ort times ONNX Runtime's Run.
 * Inputs not named with --in (e.g. targets) are left to the library. The
 * JSON carries lathe_program_stats too (compile phases, kernel counts, arena).
 *
 * --train compiles a training step instead (lathe_compile_train: forward,
 * backward and the optimizer update of the model's train block in one
 * program); each lathe_run then takes one full step on the same fixed random
 * batch, targets included (name them with --in). The JSON adds the loss of
 * the first and of the last step run (read outside the timed region), so a
 * falling loss shows the steps really train.
 *
 * --generate N times text generation instead: lathe_generate (the key/value
 * cache decode program) produces N greedy tokens from a short prompt, with
 * weights from lathe_weights_init (saved to a temporary safetensors file, as
 * lathe_generate loads its weights from a file). Every token's time is the
 * gap between two on_token callbacks; median_ms/min_ms are per token and the
 * JSON adds tokens_per_s (the library's own count) and cached. --in is not
 * used in this mode. With --backend cuda (and --precision bf16) generation
 * runs on the GPU with its key/value caches on the device. --temperature T
 * and --top-k K sample instead of greedy (on the device where
 * lathe_generate_result.device_token, which the JSON adds, says so).
 *
 * With LATHE_PROFILE=1 in the environment the library times every kernel;
 * the per-operator table (lathe_program_profile) then goes to stderr.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lathe.h"

#define MAX_BINDS 16
#define MAX_INPUTS 16
#define MAX_REPS 100000

typedef struct {
  char name[64];
  int64_t value;
} bind_arg;

typedef struct {
  char name[64];
  lathe_tensor t;
  int64_t range; /* integer inputs: values in [0, range) */
} input_arg;

typedef struct {
  const char *model;
  bind_arg binds[MAX_BINDS];
  int nbinds;
  input_arg ins[MAX_INPUTS];
  int nins;
  int reps, warmup;
  double max_seconds; /* stop timing early once this much time is spent */
  uint64_t seed;
  int compile_only;
  int zero_copy; /* --zero-copy: inputs bound once (lathe_bind_input); a step is lathe_run alone */
  int train; /* time training steps (lathe_compile_train) */
  int generate; /* > 0: time lathe_generate of this many tokens */
  double temperature; /* --generate: 0 greedy */
  int top_k;          /* --generate: 0 every token */
  int cuda;     /* --backend cuda: compile for the GPU (the driver, NVRTC, cuBLASLt) */
  int bf16;     /* --precision bf16 (with --backend cuda) */
  int quant;    /* lathe_quant: run on the initialised weights quantized (lathe_quantize) in this mode */
  char qpath[64]; /* the quantized weights file, while it exists */
  const char *calib; /* --quant int8: the calibration data (lathe_quantize_options.data) */
  const char *passes; /* --passes LIST: lathe_options.passes (e.g. the -O2 list without qdq_place, qdq_fold) */
  double load_ms; /* parse + check + bind, measured by main */
} bench_args;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what, lathe_error *err) {
  fprintf(stderr, "lathe_bench: %s: %s\n", what, err && err->message ? err->message : "failed");
  lathe_error_clear(err);
  return 1;
}

/* ---- argument parsing ---- */

static int parse_int(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

/* NAME=VALUE into name (bounded) and the text after '='. */
static const char *split_eq(const char *s, char *name, size_t n) {
  const char *eq = strchr(s, '=');
  if (!eq || eq == s || (size_t)(eq - s) >= n) return NULL;
  memcpy(name, s, (size_t)(eq - s));
  name[eq - s] = 0;
  return eq + 1;
}

static const struct {
  const char *name;
  lathe_dtype t;
} dtype_names[] = {{"f32", LATHE_F32}, {"i32", LATHE_I32}, {"i64", LATHE_I64},
                   {"u8", LATHE_U8},   {"i8", LATHE_I8},   {"bool", LATHE_BOOL}};

static int parse_dtype(const char *s, size_t len, lathe_dtype *t) {
  for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
    if (strlen(dtype_names[i].name) == len && strncmp(s, dtype_names[i].name, len) == 0) {
      *t = dtype_names[i].t;
      return 0;
    }
  return -1;
}

/* DTYPE:D0xD1x...[:RANGE] */
static int parse_input(const char *arg, input_arg *in) {
  const char *spec = split_eq(arg, in->name, sizeof in->name);
  if (!spec) return -1;
  const char *c1 = strchr(spec, ':');
  if (!c1 || parse_dtype(spec, (size_t)(c1 - spec), &in->t.dtype)) return -1;
  char dims[256];
  const char *c2 = strchr(c1 + 1, ':');
  size_t dl = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
  if (dl == 0 || dl >= sizeof dims) return -1;
  memcpy(dims, c1 + 1, dl);
  dims[dl] = 0;
  in->t.rank = 0;
  for (char *save = NULL, *tok = strtok_r(dims, "x", &save); tok; tok = strtok_r(NULL, "x", &save)) {
    if (in->t.rank >= LATHE_MAXDIM || parse_int(tok, &in->t.shape[in->t.rank]) || in->t.shape[in->t.rank] < 1)
      return -1;
    in->t.rank++;
  }
  in->range = 2;
  if (c2 && (parse_int(c2 + 1, &in->range) || in->range < 1)) return -1;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: lathe_bench MODEL [--bind NAME=N]... [--in NAME=DTYPE:D0xD1[:RANGE]]...\n"
                  "                   [--reps N] [--warmup N] [--max-seconds S] [--seed S] [--compile-only] [--zero-copy]\n"
                  "                   [--train] [--generate N [--temperature T] [--top-k K]]\n"
                  "                   [--quant w8|w4|int8-dynamic|int8|bf16|f16]\n"
                  "                   [--calib-data D] [--backend llvm|cuda] [--precision f32|bf16] [--passes LIST]\n");
  return 2;
}

/* a finite temperature >= 0 (0: greedy) */
static int parse_temp(const char *v, double *t) {
  char *end;
  *t = strtod(v, &end);
  return end != v && !*end && *t >= 0 && *t < 1e300 ? 0 : -1;
}

static int parse_args(int argc, char **argv, bench_args *a) {
  a->reps = 20;
  a->warmup = 3;
  a->max_seconds = 30;
  a->seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n;
    if (strcmp(s, "--compile-only") == 0) { a->compile_only = 1; continue; }
    if (strcmp(s, "--zero-copy") == 0) { a->zero_copy = 1; continue; }
    if (strcmp(s, "--train") == 0) { a->train = 1; continue; }
    if (strcmp(s, "--precision") == 0 && v && (strcmp(v, "bf16") == 0 || strcmp(v, "f32") == 0)) {
      a->bf16 = strcmp(v, "bf16") == 0; /* --backend cuda's --precision (docs/cuda.md) */
      i++;
      continue;
    }
    if (strcmp(s, "--backend") == 0 && v && (strcmp(v, "cuda") == 0 || strcmp(v, "llvm") == 0)) {
      a->cuda = strcmp(v, "cuda") == 0;
      i++;
      continue;
    }
    if (strcmp(s, "--quant") == 0 && v && lathe_quant_parse(v) > 0) { a->quant = lathe_quant_parse(v); i++; continue; }
    if (strcmp(s, "--calib-data") == 0 && v) { a->calib = v; i++; continue; }
    if (strcmp(s, "--passes") == 0 && v) { a->passes = v; i++; continue; }
    if (s[0] != '-') { a->model = s; continue; }
    if (!v) return -1;
    i++;
    if (strcmp(s, "--bind") == 0) {
      if (a->nbinds >= MAX_BINDS) return -1;
      bind_arg *b = &a->binds[a->nbinds++];
      const char *val = split_eq(v, b->name, sizeof b->name);
      if (!val || parse_int(val, &b->value) || b->value < 1) return -1;
    } else if (strcmp(s, "--in") == 0) {
      if (a->nins >= MAX_INPUTS || parse_input(v, &a->ins[a->nins])) return -1;
      a->nins++;
    } else if (strcmp(s, "--reps") == 0 && !parse_int(v, &n) && n >= 1 && n <= MAX_REPS) {
      a->reps = (int)n;
    } else if (strcmp(s, "--warmup") == 0 && !parse_int(v, &n) && n >= 0 && n <= MAX_REPS) {
      a->warmup = (int)n;
    } else if (strcmp(s, "--generate") == 0 && !parse_int(v, &n) && n >= 1 && n <= MAX_REPS) {
      a->generate = (int)n;
    } else if (strcmp(s, "--temperature") == 0 && parse_temp(v, &a->temperature) == 0) {
      /* parsed */
    } else if (strcmp(s, "--top-k") == 0 && !parse_int(v, &n) && n >= 0 && n <= 2147483647) {
      a->top_k = (int)n;
    } else if (strcmp(s, "--seed") == 0 && !parse_int(v, &n)) {
      a->seed = (uint64_t)n;
    } else if (strcmp(s, "--max-seconds") == 0) {
      a->max_seconds = atof(v);
    } else {
      return -1;
    }
  }
  return a->model ? 0 : -1;
}

/* ---- random inputs (splitmix64: reproducible across runs and machines) ---- */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int fill_input(input_arg *in, uint64_t *rng) {
  int64_t n = lathe_tensor_numel(&in->t);
  in->t.data = malloc(lathe_tensor_bytes(&in->t) + 1);
  if (!in->t.data) return -1;
  for (int64_t i = 0; i < n; i++) {
    uint64_t r = next_u64(rng);
    switch (in->t.dtype) {
    case LATHE_F32: ((float *)in->t.data)[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1); break;
    case LATHE_I32: ((int32_t *)in->t.data)[i] = (int32_t)(r % (uint64_t)in->range); break;
    case LATHE_I64: ((int64_t *)in->t.data)[i] = (int64_t)(r % (uint64_t)in->range); break;
    case LATHE_I8: ((int8_t *)in->t.data)[i] = (int8_t)(r % (uint64_t)in->range); break;
    default: ((uint8_t *)in->t.data)[i] = (uint8_t)(r % (uint64_t)in->range); break;
    }
  }
  return 0;
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int step(lathe_program *p, bench_args *a, lathe_error *err) {
  for (int i = 0; i < a->nins && !a->zero_copy; i++)
    if (lathe_set_input(p, a->ins[i].name, &a->ins[i].t, err)) return -1;
  return lathe_run(p, err);
}

/* The last step's loss (a scalar output); NAN if it cannot be read. */
static double read_loss(const lathe_program *p) {
  lathe_tensor t = {0};
  lathe_error e = {0};
  double v = NAN;
  if (lathe_get_output(p, "loss", &t, &e) == 0 && lathe_tensor_numel(&t) == 1) v = *(const float *)t.data;
  lathe_tensor_free(&t);
  lathe_error_clear(&e);
  return v;
}

/* Warm up, then time up to a->reps steps (fewer once max_seconds is spent).
 * times receives the per-step milliseconds; returns how many, or -1. When
 * training, loss[0] and loss[1] receive the first and the last step's loss. */
static int time_steps(lathe_program *p, bench_args *a, double *times, double loss[2], lathe_error *err) {
  /* --zero-copy: every run reads the caller's arrays in place, as
   * tools/ort/ort_run.c's runs read their OrtValues (made once over the
   * caller's memory): the per-step input copy left out of both sides */
  for (int i = 0; i < a->nins && a->zero_copy; i++)
    if (lathe_bind_input(p, a->ins[i].name, &a->ins[i].t, err)) return -1;
  for (int i = 0; i < a->warmup; i++) {
    if (step(p, a, err)) return -1;
    if (i == 0 && a->train) loss[0] = read_loss(p);
  }
  double start = now_ms();
  int n = 0;
  while (n < a->reps) {
    double t0 = now_ms();
    if (step(p, a, err)) return -1;
    times[n++] = now_ms() - t0;
    if (n == 1 && a->warmup == 0 && a->train) loss[0] = read_loss(p);
    if (n >= 3 && now_ms() - start > a->max_seconds * 1e3) break;
  }
  if (a->train) loss[1] = read_loss(p);
  return n;
}

/* The library's own account of the compile (phases, kernels, memory plan). */
static void print_stats(const lathe_program *p) {
  lathe_compile_stats st;
  if (lathe_program_stats(p, &st)) return;
  printf(", \"stats\": {\"ir_ms\": %.3f, \"opt_ms\": %.3f, \"codegen_ms\": %.3f, \"jit_ms\": %.3f, "
         "\"cache_hit\": %d, \"kernels\": %d, \"kernels_unique\": %d, \"arena_bytes\": %lld, "
         "\"naive_bytes\": %lld}",
         st.ir_ms, st.opt_ms, st.codegen_ms, st.jit_ms, st.cache_hit, st.kernels, st.kernels_unique,
         (long long)st.arena_bytes, (long long)st.naive_bytes);
}

/* JSON has no NaN: an unreadable loss is null. */
static void print_loss(const char *key, double v) {
  if (isfinite(v)) printf(", \"%s\": %.6g", key, v);
  else printf(", \"%s\": null", key);
}

static void print_result(const bench_args *a, const lathe_program *p, double compile_ms, double *times, int n,
                         double init_ms, const double loss[2]) {
  printf("{\"model\": \"%s\", \"mode\": \"%s\", \"load_ms\": %.3f, \"compile_ms\": %.3f", a->model,
         a->train ? "train" : a->generate ? "generate" : "inference", a->load_ms, compile_ms);
  print_stats(p);
  if (n > 0) {
    qsort(times, (size_t)n, sizeof *times, cmp_double);
    double med = n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
    printf(", \"init_ms\": %.3f, \"median_ms\": %.6f, \"min_ms\": %.6f, \"max_ms\": %.6f, \"reps\": %d", init_ms,
           med, times[0], times[n - 1], n);
    if (a->train) {
      print_loss("first_loss", loss[0]);
      print_loss("last_loss", loss[1]);
    }
  }
  printf("}\n");
}

/* ---- generation ---- */

typedef struct {
  double *stamps; /* the wall clock at each generated token */
  int n, cap;
} token_clock;

static int on_token(void *user, int token, int byte) {
  (void)token;
  (void)byte;
  token_clock *c = user;
  if (c->n < c->cap) c->stamps[c->n++] = now_ms();
  return 0;
}

/* --quant: the seeded f32 weights of an interpreter program, quantized by
 * lathe_quantize into a temporary file (a->qpath) that the compiled
 * program (or lathe_generate) loads. */
static int make_quantized(bench_args *a, lathe_model *m, lathe_error *err) {
  char f32[] = "/tmp/lathe-bench-f32-XXXXXX";
  strcpy(a->qpath, "/tmp/lathe-bench-q-XXXXXX");
  int fd = mkstemp(f32), fq = fd >= 0 ? mkstemp(a->qpath) : -1;
  if (fd >= 0) close(fd);
  if (fq >= 0) close(fq);
  if (fd < 0 || fq < 0) { fprintf(stderr, "lathe_bench: cannot create a temporary file\n"); return -1; }
  lathe_options o = {.backend = LATHE_BACKEND_INTERP};
  lathe_program *p = lathe_compile(m, &o, err);
  lathe_quantize_options qo = {.weights = f32, .out = a->qpath, .mode = a->quant, .data = a->calib};
  int rc = !p || lathe_weights_init(p, a->seed, err) || lathe_weights_save(p, f32, err) ||
           lathe_quantize(m, &qo, NULL, err);
  lathe_program_free(p);
  remove(f32);
  if (rc) fail("quantize", err);
  return rc ? -1 : 0;
}

#define GEN_PROMPT "ROMEO:\nWhat light"

/* lathe_generate needs its weights in a file: the initialised ones go to a
 * temporary safetensors file, removed afterwards. */
static int run_generate(bench_args *a, lathe_model *m, lathe_program *p, double compile_ms, lathe_error *err) {
  char path[] = "/tmp/lathe-bench-gen-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) { fprintf(stderr, "lathe_bench: cannot create a temporary file\n"); return 1; }
  close(fd);
  token_clock c = {malloc(((size_t)a->generate + 1) * sizeof(double)), 0, a->generate};
  double *times = malloc(((size_t)a->generate + 1) * sizeof(double));
  int rc = 1;
  double t0 = now_ms();
  if (!c.stamps || !times) fprintf(stderr, "lathe_bench: out of memory\n");
  else if (!a->quant && lathe_weights_init(p, a->seed, err)) fail("weights", err);
  else if (!a->quant && lathe_weights_save(p, path, err)) fail("weights save", err);
  else {
    double init_ms = now_ms() - t0;
    lathe_generate_options go = {.weights = a->quant ? a->qpath : path, .prompt = GEN_PROMPT, .tokens = a->generate,
                                 .temperature = a->temperature, .top_k = a->top_k, .seed = a->seed,
                                 .backend = a->cuda ? LATHE_BACKEND_CUDA : LATHE_BACKEND_LLVM,
                                 .precision = a->bf16 ? LATHE_PRECISION_BF16 : LATHE_PRECISION_F32,
                                 .on_token = on_token, .user = &c};
    lathe_generate_result r = {0};
    if (lathe_generate(m, &go, &r, err)) fail("generate", err);
    else if (c.n < 2) fprintf(stderr, "lathe_bench: generate gave %d tokens\n", c.n);
    else {
      int n = c.n - 1;
      for (int i = 0; i < n; i++) times[i] = c.stamps[i + 1] - c.stamps[i];
      printf("{\"model\": \"%s\", \"mode\": \"generate\", \"load_ms\": %.3f, \"compile_ms\": %.3f", a->model,
             a->load_ms, compile_ms);
      print_stats(p);
      qsort(times, (size_t)n, sizeof *times, cmp_double);
      double med = n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
      printf(", \"init_ms\": %.3f, \"median_ms\": %.6f, \"min_ms\": %.6f, \"max_ms\": %.6f, \"reps\": %d, "
             "\"tokens_per_s\": %.3f, \"generated\": %lld, \"prompt_tokens\": %lld, \"prefill_ms\": %.3f, "
             "\"cached\": %d, \"device_token\": %d, \"temperature\": %g, \"top_k\": %d}\n",
             init_ms, med, times[0], times[n - 1], n, r.tokens_per_s, (long long)r.generated,
             (long long)r.prompt_tokens, r.prefill_seconds * 1e3, r.cached, r.device_token, a->temperature, a->top_k);
      if (r.note[0]) fprintf(stderr, "lathe_bench: generate: %s\n", r.note);
      rc = 0;
    }
  }
  remove(path);
  free(c.stamps);
  free(times);
  return rc;
}

static int run_bench(bench_args *a, lathe_model *m, lathe_error *err) {
  lathe_options opt = {.backend = a->cuda ? LATHE_BACKEND_CUDA : LATHE_BACKEND_LLVM, .quant = a->quant,
                       .precision = a->bf16 ? LATHE_PRECISION_BF16 : LATHE_PRECISION_F32, .passes = a->passes};
  /* --generate --backend cuda: this program only initialises the weights
   * (lathe_generate compiles its own), so the interpreter spares an NVRTC
   * compile of the whole forward pass on the GPU machine */
  if (a->generate && a->cuda) opt = (lathe_options){.backend = LATHE_BACKEND_INTERP};
  if (a->quant && make_quantized(a, m, err)) return 1;
  double t0 = now_ms();
  lathe_program *p = a->train ? lathe_compile_train(m, &opt, err) : lathe_compile(m, &opt, err);
  double compile_ms = now_ms() - t0;
  if (!p) return fail("compile", err);
  if (a->compile_only) {
    print_result(a, p, compile_ms, NULL, 0, 0, NULL);
    lathe_program_free(p);
    return 0;
  }
  if (a->generate) {
    int grc = run_generate(a, m, p, compile_ms, err);
    lathe_program_free(p);
    return grc;
  }
  int rc = 1;
  double *times = malloc((size_t)a->reps * sizeof *times);
  t0 = now_ms();
  if (!times) fprintf(stderr, "lathe_bench: out of memory\n");
  else if (a->quant ? lathe_weights_load(p, a->qpath, err) : lathe_weights_init(p, a->seed, err)) fail("weights", err);
  else {
    double init_ms = now_ms() - t0;
    double loss[2] = {NAN, NAN};
    int n = time_steps(p, a, times, loss, err);
    if (n < 0) fail("run", err);
    else {
      print_result(a, p, compile_ms, times, n, init_ms, loss);
      char *prof = lathe_program_profile(p);
      if (prof) fputs(prof, stderr);
      free(prof);
      rc = 0;
    }
  }
  free(times);
  lathe_program_free(p);
  return rc;
}

int main(int argc, char **argv) {
  static bench_args a;
  if (parse_args(argc, argv, &a)) return usage();
  lathe_error err = {0};
  uint64_t rng = a.seed * 0x2545f4914f6cdd1dULL + 7;
  for (int i = 0; i < a.nins; i++)
    if (fill_input(&a.ins[i], &rng)) { fprintf(stderr, "lathe_bench: out of memory\n"); return 1; }
  double t0 = now_ms();
  lathe_model *m = lathe_model_load(a.model, &err);
  if (!m) return fail("load", &err);
  int rc = 0;
  for (int i = 0; i < a.nbinds && rc == 0; i++)
    if (lathe_model_bind(m, a.binds[i].name, a.binds[i].value, &err)) rc = fail("bind", &err);
  a.load_ms = now_ms() - t0;
  if (rc == 0) rc = run_bench(&a, m, &err);
  lathe_model_free(m);
  if (a.qpath[0]) remove(a.qpath);
  for (int i = 0; i < a.nins; i++) free(a.ins[i].t.data);
  return rc;
}
