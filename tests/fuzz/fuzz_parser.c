/* fuzz_parser.c -- libFuzzer target for the frontend: any bytes must parse
 * to a model or to diagnostics, never crash, hang or leak. Models that parse
 * are also lowered (symbolic dims bound to 1), which exercises the checker,
 * the shape rules and the verifier. */
#include <stddef.h>
#include <stdint.h>
#include "lathe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_parse("fuzz.nn", (const char *)data, size, &err);
  if (m) {
    lathe_options o = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
    lathe_program *p = lathe_compile(m, &o, &err);
    lathe_program_free(p);
    lathe_model_free(m);
  }
  lathe_error_clear(&err);
  return 0;
}
