/* fuzz_safetensors.c -- libFuzzer target for the safetensors reader: any
 * bytes must read to tensors that match their header or to an error message,
 * never crash, hang or leak. Read from memory (rt_st_read_mem): nothing is
 * written anywhere. Every float tensor that loads is also scanned for
 * non-finite values, as the weights loaders do. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/runtime.h"

static volatile unsigned char sink; /* reads of every byte are not optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rt_st_file f;
  char msg[1024];
  if (rt_st_read_mem("fuzz.safetensors", data, size, &f, msg, sizeof msg) == 0) {
    for (int i = 0; i < f.n; i++) {
      const rt_st_entry *e = &f.e[i];
      /* every tensor is findable by its name, and its bytes are all there */
      if (rt_st_find(&f, e->name) == NULL) __builtin_trap();
      size_t bytes = (size_t)lathe_tensor_bytes(&e->t);
      for (size_t k = 0; k < bytes; k++) sink ^= ((const unsigned char *)e->t.data)[k];
      rt_st_check_finite("fuzz.safetensors", e, msg, sizeof msg);
    }
    rt_st_free(&f);
  } else if (msg[0] == 0) {
    __builtin_trap(); /* an error must say why */
  }
  return 0;
}
