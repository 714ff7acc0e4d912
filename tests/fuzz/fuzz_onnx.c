/* fuzz_onnx.c -- libFuzzer target for the ONNX reader and importer
 * (onnx/onnx_io.c, onnx/ox_import.c): any bytes must decode to a model that
 * imports to .nn text and weights, or give an error message; never crash,
 * hang or leak. Seeds: tests/fuzz/seeds/onnx (small node-test models). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "onnx_io.h"
#include "ox_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char msg[2048] = "";
  Onnx__ModelProto *m = ox_model_unpack("fuzz.onnx", data, size, msg, sizeof msg);
  if (!m) {
    if (!msg[0]) __builtin_trap(); /* an error must say why */
    return 0;
  }
  ox_import_result r;
  ox_import_options o = {.base_dir = "/nonexistent"}; /* external data is never read from the fuzzer's disk */
  if (ox_import(m, &o, &r, msg, sizeof msg) == 0) {
    if (!r.nn || !r.name) __builtin_trap();
    ox_import_free(&r);
  } else if (!msg[0]) {
    __builtin_trap();
  }
  ox_model_free(m);
  return 0;
}
