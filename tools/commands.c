/* commands.c -- the subcommands of `lathe`: check, dot, init, run. Each parses
 * its flags, calls the public API and turns errors into an exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h"

int cli_backend(const char *s, lathe_backend *b) {
  if (!s || !strcmp(s, "llvm")) *b = LATHE_BACKEND_LLVM;
  else if (!strcmp(s, "interp")) *b = LATHE_BACKEND_INTERP;
  else if (!strcmp(s, "cuda")) *b = LATHE_BACKEND_CUDA;
  else {
    fprintf(stderr, "lathe: error: unknown backend '%s' (expected interp, llvm or cuda)\n", s);
    return -1;
  }
  return 0;
}

int cli_gemm(const char *cmd, const char *s) {
  if (!s) return 0;
  if (strcmp(s, "blas") != 0 && strcmp(s, "generated") != 0) {
    fprintf(stderr, "lathe %s: error: --gemm %s: expected blas or generated\n", cmd, s);
    return -1;
  }
  return setenv("LATHE_GEMM", s, 1) ? -1 : 0;
}

/* Load, bind and compile with unbound dims defaulting to 1 (check, dot, init). */
static lathe_program *load_for_inspection(const cli_args *a, int *status) {
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  if (cli_pass_options(a, "check", &o)) { *status = 1; return NULL; }
  lathe_error err = {0};
  if (cli_weights_quant(cli_value(a, "--weights"), &o, &err)) { *status = cli_report(&err); return NULL; }
  lathe_model *m = cli_load_model(a, status);
  if (!m) return NULL;
  lathe_program *p = lathe_compile(m, &o, &err);
  lathe_model_free(m);
  if (!p) *status = cli_report(&err);
  return p;
}

/* "12.3 MiB", "4.0 KiB" or "512 B" into buf */
static const char *human_bytes(int64_t b, char *buf, size_t n) {
  if (b >= 1 << 20) snprintf(buf, n, "%.2f MiB", (double)b / (1 << 20));
  else if (b >= 1 << 10) snprintf(buf, n, "%.1f KiB", (double)b / (1 << 10));
  else snprintf(buf, n, "%lld B", (long long)b);
  return buf;
}

/* The native backend's memory plan: the arena's planned peak against the
 * naive sum of every intermediate tensor. */
static void print_memplan(const lathe_program *p) {
  lathe_compile_stats st = {0};
  if (lathe_program_stats(p, &st)) return;
  char a[32], b[32];
  printf("memory plan: peak %lld bytes (%s) of intermediates, naive sum %lld bytes (%s)", (long long)st.arena_bytes,
         human_bytes(st.arena_bytes, a, sizeof a), (long long)st.naive_bytes, human_bytes(st.naive_bytes, b, sizeof b));
  if (st.naive_bytes > 0) printf(", %.1f%% of naive", 100.0 * (double)st.arena_bytes / (double)st.naive_bytes);
  printf("\n");
}

/* The graph passes: nodes, kernels and bytes moved before and after. */
static void print_pass_stats(const lathe_program *p) {
  lathe_pass_stats st;
  if (lathe_program_pass_stats(p, &st)) return;
  char a[32], b[32], lv[16];
  snprintf(lv, sizeof lv, st.opt_level < 0 ? "--passes" : "-O%d", st.opt_level);
  printf("passes (%s): nodes %d -> %d, kernels %d -> %d, bytes moved %lld (%s) -> %lld (%s)", lv, st.nodes_before,
         st.nodes_after, st.kernels_before, st.kernels_after, (long long)st.bytes_before,
         human_bytes(st.bytes_before, a, sizeof a), (long long)st.bytes_after, human_bytes(st.bytes_after, b, sizeof b));
  if (st.bytes_before > 0) printf(", %.1f%%", 100.0 * (double)st.bytes_after / (double)st.bytes_before);
  printf("\n");
}

/* check --kernels: the kernel plan after the summary. */
static int print_kernels(const cli_args *a, const lathe_program *p) {
  if (!cli_has(a, "--kernels")) return 0;
  lathe_error err = {0};
  return lathe_program_print_kernels(p, stdout, &err) ? cli_report(&err) : 0;
}

/* check --backend cuda: render and compile every kernel with NVRTC (for
 * --gpu-arch, or the GPU's own) and say what was made; --dump-dir gets
 * each module's CUDA C and CUBIN/PTX. */
static int check_cuda(const cli_args *a, const lathe_program *p) {
  lathe_backend b;
  if (cli_backend(cli_value(a, "--backend"), &b)) return 1;
  if (b != LATHE_BACKEND_CUDA) {
    if (cli_value(a, "--gpu-arch")) {
      fprintf(stderr, "lathe check: error: --gpu-arch is for --backend cuda\n");
      return 1;
    }
    return 0;
  }
  lathe_error err = {0};
  lathe_cuda_report r;
  if (lathe_program_cuda_check(p, cli_value(a, "--gpu-arch"), cli_value(a, "--dump-dir"), stderr, &r, &err))
    return cli_report(&err);
  printf("cuda (%s): %d kernels as %d functions in %d modules (%s), %d launches of which %d gemm; render %.1f ms, "
         "NVRTC %.1f ms (%d of %d modules cached)%s\n",
         r.arch, r.kernels, r.functions, r.modules, r.ptx ? "PTX" : "CUBIN", r.launches, r.gemms, r.render_ms,
         r.compile_ms, r.cache_hits, r.modules, r.warnings ? "; NVRTC warned (above)" : "");
  return r.warnings ? 1 : 0;
}

/* check --train: the whole training step (forward, backward, optimizer) as
 * lathe train compiles it, summarised: its size, memory plan and passes.
 * check --generate: the decode-step program lathe generate compiles (batch
 * 1, the key/value caches as state). With --backend cuda the kernels of
 * either are rendered and compiled for the GPU. */
typedef lathe_program *(*compile_fn)(lathe_model *, const lathe_options *, lathe_error *);
static int inspect_program(const cli_args *a, compile_fn compile, const char *title, int pass_stats) {
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  int status = 0;
  if (cli_pass_options(a, "check", &o)) return 1;
  lathe_error err = {0};
  if (cli_weights_quant(cli_value(a, "--weights"), &o, &err)) return cli_report(&err); /* quantized: as its mode */
  lathe_model *m = cli_load_model(a, &status);
  if (!m) return status;
  lathe_program *p = compile(m, &o, &err);
  lathe_model_free(m);
  if (!p) return cli_report(&err);
  printf("%s\n", title);
  print_memplan(p);
  if (pass_stats) print_pass_stats(p);
  status = print_kernels(a, p);
  if (!status) status = check_cuda(a, p);
  lathe_program_free(p);
  return status;
}
static int inspect_train(const cli_args *a) {
  return inspect_program(a, lathe_compile_train,
                         "training step (forward, backward and the optimizer update in one program)", 1);
}
static int inspect_decode(const cli_args *a) {
  return inspect_program(a, lathe_compile_decode,
                         "decode step (lathe generate: one token at batch 1, the key/value caches as state)", 0);
}

static int inspect(int argc, char **argv, const char *cmd, const char *flags, lathe_print_kind kind) {
  cli_args a;
  int status = cli_parse(argc, argv, cmd, flags, &a);
  if (status) { cli_args_free(&a); return status; }
  if (cli_has(&a, "--train") || cli_has(&a, "--generate")) {
    status = cli_has(&a, "--train") ? inspect_train(&a) : inspect_decode(&a);
    cli_args_free(&a);
    return status;
  }
  lathe_program *p = load_for_inspection(&a, &status);
  if (p) {
    lathe_program_print(p, cli_has(&a, "--ir") ? LATHE_PRINT_IR : kind, stdout);
    if (kind == LATHE_PRINT_SUMMARY && !cli_has(&a, "--ir")) print_memplan(p), print_pass_stats(p);
    if (kind == LATHE_PRINT_SUMMARY) status = print_kernels(&a, p);
    if (kind == LATHE_PRINT_SUMMARY && !status) status = check_cuda(&a, p);
    lathe_program_free(p);
  }
  cli_args_free(&a);
  return status;
}

int cmd_check(int argc, char **argv) {
  return inspect(argc, argv, "check", "--bind=pair --ir=bool --train=bool --generate=bool --kernels=bool --backend=value --gpu-arch=value --weights=value " CLI_PASS_FLAGS,
                 LATHE_PRINT_SUMMARY);
}
int cmd_dot(int argc, char **argv) { return inspect(argc, argv, "dot", "--bind=pair " CLI_PASS_FLAGS, LATHE_PRINT_DOT); }

int cmd_init(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "init", "--bind=pair -o=value --seed=value", &a);
  uint64_t seed = 0;
  if (!status) status = cli_u64(&a, "init", "--seed", &seed, NULL);
  if (status) { cli_args_free(&a); return status; }
  const char *out = cli_value(&a, "-o");
  if (!out) {
    fprintf(stderr, "lathe init: error: no output file: give -o W.safetensors\n");
    cli_args_free(&a);
    return 1;
  }
  lathe_program *p = load_for_inspection(&a, &status);
  lathe_error err = {0};
  if (p && (lathe_weights_init(p, seed, &err) || lathe_weights_save(p, out, &err)))
    status = cli_report(&err);
  else if (p)
    fprintf(stderr, "wrote %d parameters to %s (seed %llu)\n", lathe_num_params(p), out, (unsigned long long)seed);
  lathe_program_free(p);
  cli_args_free(&a);
  return status;
}

/* Print a tensor the way NumPy would show a short array. */
static void print_tensor(const char *name, const lathe_tensor *t) {
  printf("%s: %s[", name, lathe_dtype_name(t->dtype));
  for (int j = 0; j < t->rank; j++) printf("%s%lld", j ? ", " : "", (long long)t->shape[j]);
  printf("]\n");
  int64_t n = lathe_tensor_numel(t), show = n < 64 ? n : 64;
  int64_t row = t->rank ? t->shape[t->rank - 1] : 1;
  for (int64_t k = 0; k < show; k++) {
    if (t->dtype == LATHE_F32) printf("%s%.6g", k % row ? " " : "  ", ((float *)t->data)[k]);
    else if (t->dtype == LATHE_I64) printf("%s%lld", k % row ? " " : "  ", (long long)((int64_t *)t->data)[k]);
    else printf("%s%d", k % row ? " " : "  ", ((int32_t *)t->data)[k]);
    if ((k + 1) % row == 0 || k + 1 == show) printf("\n");
  }
  if (show < n) printf("  ... (%lld values; use --out %s=FILE.npy for all)\n", (long long)n, name);
}

typedef struct {
  double parse_ms, compile_ms, run_ms; /* wall clock, for --time */
} run_times;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

typedef struct {
  run_times tm;
  lathe_model *m;
  lathe_program *p;
  cli_item ins[CLI_MAXITEMS], outs[CLI_MAXITEMS];
  int nins, nouts;
  lathe_tensor in[CLI_MAXITEMS];
} run_state;

static int run_load_inputs(run_state *s, lathe_error *err) {
  for (int i = 0; i < s->nins; i++) {
    if (lathe_npy_load(s->ins[i].value, &s->in[i], err)) return -1;
    if (lathe_model_bind_input(s->m, s->ins[i].name, s->in[i].rank, s->in[i].shape, err)) return -1;
  }
  return 0;
}

static int run_write_outputs(run_state *s, lathe_error *err) {
  /* Every requested output must be readable (e.g. none reads a target that
   * was not given) before any file is written or anything printed. */
  int n = s->nouts ? s->nouts : lathe_num_outputs(s->p);
  for (int i = 0; i < n; i++) {
    lathe_tensor t;
    if (lathe_get_output(s->p, s->nouts ? s->outs[i].name : lathe_output_name(s->p, i), &t, err)) return -1;
    lathe_tensor_free(&t);
  }
  for (int i = 0; i < s->nouts; i++)
    if (lathe_output_save(s->p, s->outs[i].name, s->outs[i].value, err)) return -1;
  for (int i = 0; s->nouts == 0 && i < lathe_num_outputs(s->p); i++) {
    lathe_tensor t;
    if (lathe_get_output(s->p, lathe_output_name(s->p, i), &t, err)) return -1;
    print_tensor(lathe_output_name(s->p, i), &t);
    lathe_tensor_free(&t);
  }
  return 0;
}

/* --normalize K states how the inputs are to be normalised. The weights
 * decide: they carry the statistics training used, and lathe_set_input
 * applies them to the raw arrays. So K must agree with them, and cannot ask
 * for statistics they do not have. */
static int run_check_normalize(const run_state *s, const char *k, const char *weights) {
  if (!k) return 0;
  if (strcmp(k, "none") && strcmp(k, "standard") && strcmp(k, "minmax")) {
    fprintf(stderr, "lathe run: error: unknown normalisation '%s' (expected standard, minmax or none)\n", k);
    return 1;
  }
  int carried = 0;
  for (int i = 0; s->p && i < s->nins; i++) {
    lathe_preprocess pp;
    if (!lathe_input_preprocess(s->p, s->ins[i].name, &pp)) continue;
    carried = 1;
    if (strcmp(k, lathe_norm_kind_name(pp.kind)) != 0) {
      fprintf(stderr, "lathe run: error: --normalize %s: the weights '%s' were trained with %s normalisation of "
                      "input '%s' and carry its statistics; give raw inputs and leave --normalize out\n",
              k, weights, lathe_norm_kind_name(pp.kind), s->ins[i].name);
      return 1;
    }
  }
  if (!carried && strcmp(k, "none") != 0) {
    fprintf(stderr, "lathe run: error: --normalize %s: the weights '%s' carry no normalisation statistics (they "
                    "come from training: use a checkpoint lathe train wrote)\n", k, weights ? weights : "(none)");
    return 1;
  }
  return 0;
}

/* --pipeline K under mpirun -np K: this rank's stage of the forward pass;
 * the last rank writes the outputs (docs/distributed.md). */
static int run_pipeline(run_state *s, const cli_args *a, const lathe_options *o, lathe_error *err) {
  uint64_t k = 0;
  int given = 0;
  if (cli_u64(a, "run", "--pipeline", &k, &given)) return 1;
  const char *weights = cli_value(a, "--weights");
  if (k < 2 || k > 64 || !weights) {
    fprintf(stderr, "lathe run: error: --pipeline K needs K from 2 to 64 and --weights FILE\n");
    return 1;
  }
  if (lathe_dist_init(err)) return cli_report(err);
  const char *names[CLI_MAXITEMS];
  for (int i = 0; i < s->nins; i++) names[i] = s->ins[i].name;
  if (lathe_run_pipeline(s->m, o, (int)k, weights, names, s->in, s->nins, &s->p, err)) {
    int rc = cli_report(err);
    if (lathe_dist_size() > 1) lathe_dist_abort("lathe run --pipeline failed on this rank");
    return rc;
  }
  return s->p && run_write_outputs(s, err) ? cli_report(err) : 0;
}

static int run_all(run_state *s, const cli_args *a, lathe_error *err) {
  int f64 = cli_has(a, "--f64");
  const char *backend = cli_value(a, "--backend");
  lathe_options o = {.f64 = f64};
  if (cli_pass_options(a, "run", &o)) return 1;
  if (cli_backend(backend ? backend : f64 ? "interp" : NULL, &o.backend)) return 1;
  if (cli_gemm("run", cli_value(a, "--gemm"))) return 1;
  if (f64 && o.backend != LATHE_BACKEND_INTERP) {
    fprintf(stderr, "lathe run: error: --f64 needs --backend interp\n");
    return 1;
  }
  s->nins = cli_items(a, "--in", s->ins, CLI_MAXITEMS);
  s->nouts = cli_items(a, "--out", s->outs, CLI_MAXITEMS);
  if (run_load_inputs(s, err)) return cli_report(err);
  if (cli_weights_quant(cli_value(a, "--weights"), &o, err)) return cli_report(err);
  if (cli_value(a, "--pipeline")) return run_pipeline(s, a, &o, err);
  double t0 = now_ms();
  s->p = lathe_compile(s->m, &o, err);
  s->tm.compile_ms = now_ms() - t0;
  if (!s->p) return cli_report(err);
  const char *weights = cli_value(a, "--weights");
  if (!weights && lathe_num_params(s->p) > 0) {
    fprintf(stderr, "lathe run: error: model has %d parameters: give --weights FILE "
                    "(lathe init writes fresh ones)\n", lathe_num_params(s->p));
    return 1;
  }
  if (weights && lathe_weights_load(s->p, weights, err)) return cli_report(err);
  if (run_check_normalize(s, cli_value(a, "--normalize"), weights)) return 1;
  for (int i = 0; i < s->nins; i++)
    if (lathe_set_input(s->p, s->ins[i].name, &s->in[i], err)) return cli_report(err);
  t0 = now_ms();
  if (lathe_run(s->p, err)) return cli_report(err);
  s->tm.run_ms = now_ms() - t0;
  if (run_write_outputs(s, err)) return cli_report(err);
  return 0;
}

/* --time: the compile split, the kernel counts, the plan and the run (stderr,
 * so printed outputs stay clean). */
static void print_times(const run_state *s) {
  lathe_compile_stats st = {0};
  if (!s->p || lathe_program_stats(s->p, &st)) return;
  fflush(stdout); /* the printed outputs first */
  double native = st.ir_ms + st.opt_ms + st.codegen_ms + st.jit_ms;
  double lower = s->tm.compile_ms - native > 0 ? s->tm.compile_ms - native : 0;
  fprintf(stderr, "time: parse %.2f ms, compile %.2f ms (lowering %.2f, LLVM IR %.2f, optimisation %.2f, codegen %.2f, "
                  "JIT %.2f; object cache %s), run %.3f ms\n",
          s->tm.parse_ms, s->tm.compile_ms, lower, st.ir_ms, st.opt_ms, st.codegen_ms, st.jit_ms,
          st.kernels == 0 ? "unused" : st.cache_hit ? "hit" : "miss", s->tm.run_ms);
  if (st.cuda_modules > 0)
    fprintf(stderr, "cuda: render %.2f ms, NVRTC %.2f ms (%s compile: %d of %d modules from the disk cache)\n",
            st.cuda_render_ms, st.cuda_nvrtc_ms,
            st.cuda_cache_hits == st.cuda_modules ? "warm" : st.cuda_cache_hits == 0 ? "cold" : "partly warm",
            st.cuda_cache_hits, st.cuda_modules);
  if (st.kernels > 0)
    fprintf(stderr, "kernels: %d calls, %d unique after deduplication\n", st.kernels, st.kernels_unique);
  char a[32], b[32];
  fprintf(stderr, "memory: arena %s planned, naive sum %s\n", human_bytes(st.arena_bytes, a, sizeof a),
          human_bytes(st.naive_bytes, b, sizeof b));
  char *prof = lathe_program_profile(s->p);
  if (prof) fputs(prof, stderr);
  free(prof);
}

int cmd_run(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "run",
                         "--bind=pair --weights=value --in=pair --out=pair --backend=value --gemm=value --f64=bool --time=bool "
                         "--normalize=value --pipeline=value "
                         CLI_PASS_FLAGS,
                         &a);
  if (status) { cli_args_free(&a); return status; }
  run_state s = {0};
  lathe_error err = {0};
  double t0 = now_ms();
  s.m = cli_load_model(&a, &status);
  s.tm.parse_ms = now_ms() - t0;
  if (s.m) status = run_all(&s, &a, &err);
  if (status == 0 && cli_has(&a, "--time")) print_times(&s);
  for (int i = 0; i < s.nins; i++) lathe_tensor_free(&s.in[i]);
  lathe_program_free(s.p);
  lathe_model_free(s.m);
  cli_args_free(&a);
  lathe_dist_finalize(); /* after --pipeline */
  return status;
}
