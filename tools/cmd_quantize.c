/* cmd_quantize.c -- `lathe quantize MODEL --weights W --mode M [-o Q]`:
 * lathe_quantize with a report of what was quantized and what stayed f32
 * (docs/quantize.md). `lathe run`, `eval` and `generate` read the file's
 * mode themselves. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

int cmd_quantize(int argc, char **argv) {
  cli_args a;
  int status = cli_parse(argc, argv, "quantize", "--weights=value --mode=value -o=value --data=value", &a);
  if (status) { cli_args_free(&a); return status; }
  const char *weights = cli_value(&a, "--weights"), *mode = cli_value(&a, "--mode"), *out = cli_value(&a, "-o");
  lathe_quantize_options o = {.weights = weights, .out = out ? out : "quantized.safetensors"};
  if (!weights) fprintf(stderr, "lathe quantize: error: no weights: give --weights W.safetensors (f32, from lathe train)\n"), status = 1;
  else if (!mode) fprintf(stderr, "lathe quantize: error: no mode: give --mode w8|w4|int8-dynamic|bf16|f16\n"), status = 1;
  else if ((o.mode = lathe_quant_parse(mode)) < 0) {
    fprintf(stderr, "lathe quantize: error: unknown mode '%s' (expected w8, w4, int8-dynamic, bf16 or f16%s)\n", mode,
            !strcmp(mode, "int8") ? "; static int8 with calibration is not built yet: int8-dynamic quantizes "
                                    "activations at run time" : "");
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
    printf("wrote %s\n", o.out);
  }
  lathe_model_free(m);
  cli_args_free(&a);
  return status;
}
