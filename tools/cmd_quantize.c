/* cmd_quantize.c -- `lathe quantize MODEL --weights W --mode M [-o Q]
 * [--data D --calib-batches N --calib minmax|percentile --percentile P]`:
 * lathe_quantize with a report of what was quantized and what stayed f32
 * (docs/quantize.md). `lathe run`, `eval` and `generate` read the file's
 * mode themselves. */
#include <stdio.h>
#include <string.h>

#include "rt/lathe_rt.h"
#include "tools/cli.h"

static const char modes_help[] = "w8, w4, int8-dynamic, int8, bf16 or f16";

/* the calibration flags (static int8) into o; 0, or 1 after an error */
static int calib_flags(const cli_args *a, lathe_quantize_options *o) {
  uint64_t nb = 0;
  const char *kind = cli_value(a, "--calib");
  if (cli_u64(a, "quantize", "--calib-batches", &nb, NULL) || cli_double(a, "quantize", "--percentile", &o->percentile))
    return 1;
  if (nb > (1u << 30)) {
    fprintf(stderr, "lathe quantize: error: --calib-batches %llu is out of range (1 to 2^30)\n",
            (unsigned long long)nb);
    return 1;
  }
  o->calib_batches = (int64_t)nb;
  if (kind && strcmp(kind, "minmax") && strcmp(kind, "percentile")) {
    fprintf(stderr, "lathe quantize: error: unknown --calib '%s' (expected minmax or percentile)\n", kind);
    return 1;
  }
  o->calib = kind && !strcmp(kind, "percentile") ? LATHE_CALIB_PERCENTILE : LATHE_CALIB_MINMAX;
  o->data = cli_value(a, "--data");
  return 0;
}

/* Where int8 arithmetic would be slower than f32 on this CPU, static int8
 * computes in f32 on the int8 weights (passes/quantize.c's rule): one line
 * says so. */
static void f32_note(const lathe_quantize_result *r) {
  if (r->f32_form)
    printf("note: this CPU has no SIMD integer dot products (neither VNNI nor AVX2): the int8 products compute "
           "in f32 on the int8 weights (int8 arithmetic would be slower than f32 here)\n");
  /* w8/w4 below 16 rows: the compiler keeps those products in f32 (passes/quantize_cost.c) */
  if (r->slow_rows)
    printf("note: this CPU has no SIMD integer dot products (neither VNNI nor AVX2): w8/w4 products below 16 rows "
           "(batch 1, generation) are compiled in f32 here, on the weights dequantized at load (the plain C "
           "kernel would be slower than f32)\n");
}

/* the kernel a dense product of mode compiles to on this CPU now
 * (passes/quantize.c's choice, LATHE_CPU_FEATURES and AMX included) */
static const char *kernel_of(int mode) {
  int64_t isa = lathe_rt_quant_isa();
  if (mode == LATHE_QUANT_BF16) {
    int64_t k = lathe_rt_amx_isa(mode, lathe_rt_bf16_isa(isa));
    return lathe_rt_isa_bf16dot(k) ? lathe_rt_isa_name(k) : "converted to f32";
  }
  if (mode == LATHE_QUANT_INT8 && isa == LATHE_RT_ISA_SCALAR) isa = LATHE_RT_ISA_F32; /* its f32 form */
  return lathe_rt_isa_name(lathe_rt_amx_isa(mode, isa));
}

void cli_print_kernels(FILE *f) {
  fprintf(f, "cpu kernels: int8 %s, int8-dynamic %s, bf16 %s; amx: %s\n", kernel_of(LATHE_QUANT_INT8),
          kernel_of(LATHE_QUANT_INT8_DYNAMIC), kernel_of(LATHE_QUANT_BF16), lathe_rt_amx_status());
}

/* int8, int8-dynamic and bf16: the kernel their products compile to here,
 * and AMX's state (where the CPU has AMX but Linux denied the tile state,
 * that reason: the products run on the VNNI / AVX-512 BF16 kernels) */
static void kernel_note(int mode) {
  if (mode == LATHE_QUANT_INT8 || mode == LATHE_QUANT_INT8_DYNAMIC || mode == LATHE_QUANT_BF16)
    printf("kernel on this CPU: %s (amx: %s)\n", kernel_of(mode), lathe_rt_amx_status());
}

int cmd_quantize(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "quantize",
                         "--weights=value --mode=value -o=value --data=value --calib-batches=value --calib=value "
                         "--percentile=value", &a);
  if (status) { cli_args_free(&a); return status; }
  const char *weights = cli_value(&a, "--weights"), *mode = cli_value(&a, "--mode"), *out = cli_value(&a, "-o");
  lathe_quantize_options o = {.weights = weights, .out = out ? out : "quantized.safetensors"};
  if (!weights) fprintf(stderr, "lathe quantize: error: no weights: give --weights W.safetensors (f32, from lathe train)\n"), status = 1;
  else if (!mode) fprintf(stderr, "lathe quantize: error: no mode: give --mode w8|w4|int8-dynamic|int8|bf16|f16\n"), status = 1;
  else if ((o.mode = lathe_quant_parse(mode)) < 0) {
    fprintf(stderr, "lathe quantize: error: unknown mode '%s' (expected %s)\n", mode, modes_help);
    status = 1;
  } else if (calib_flags(&a, &o)) status = 1;
  else if (o.mode == LATHE_QUANT_INT8 && !o.data) {
    fprintf(stderr, "lathe quantize: error: no calibration data: --mode int8 calibrates the activation scales on "
                    "the training split: give --data D (the training data), or use --mode int8-dynamic\n");
    status = 1;
  }
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  lathe_error err = {0};
  lathe_quantize_result r = {0};
  if (m && lathe_quantize(m, &o, &r, &err)) status = cli_report(&err);
  else if (m) {
    printf("quantized %d weight matri%s to %s, %d left f32; weights %.1f KiB -> %.1f KiB (%.2fx smaller)\n",
           r.quantized, r.quantized == 1 ? "x" : "ces", mode, r.kept, (double)r.bytes_before / 1024,
           (double)r.bytes_after / 1024, r.bytes_after ? (double)r.bytes_before / (double)r.bytes_after : 0.0);
    if (r.note[0]) printf("note: %s%s\n", r.note, r.kept > 1 ? " (and others)" : "");
    f32_note(&r);
    kernel_note(o.mode);
    printf("wrote %s\n", o.out);
  }
  lathe_model_free(m);
  cli_args_free(&a);
  return status;
}
