/* main.c -- examples/host_aot: classify digits with the MLP that
 * `lathe emit` compiled (see CMakeLists.txt for building).
 *
 *   host_aot X.npy [P.raw]
 *
 * X.npy: f32[N, 64] raw pixel values (0..16), N the batch emit bound. Prints
 * the predicted class of each row; P.raw receives the probabilities' raw
 * float bytes (what `lathe run --out probs=P.npy` holds after its header). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

/* The data of an f32 .npy file (version 1 header) of n values. */
static int read_npy(const char *path, float *x, size_t n) {
  FILE *f = fopen(path, "rb");
  unsigned char pre[10];
  int ok = f && fread(pre, 1, 10, f) == 10 && !memcmp(pre, "\x93NUMPY", 6) &&
           !fseek(f, 10 + pre[8] + 256 * pre[9], SEEK_SET) && fread(x, sizeof *x, n, f) == n;
  if (f) fclose(f);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  static const long xshape[] = MLP_X_SHAPE, pshape[] = MLP_PROBS_SHAPE;
  static float x[MLP_X_NUMEL], probs[MLP_PROBS_NUMEL];
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: host_aot X.npy [P.raw]   (X: f32[%ld, %ld])\n", xshape[0], xshape[1]);
    return 2;
  }
  if (read_npy(argv[1], x, MLP_X_NUMEL)) {
    fprintf(stderr, "host_aot: %s: not an f32 .npy of %d values\n", argv[1], MLP_X_NUMEL);
    return 1;
  }
  int rc = mlp_forward(x, probs);
  if (rc) {
    fprintf(stderr, "host_aot: mlp_forward: %s\n", lathe_rt_strerror(rc));
    return 1;
  }
  for (long i = 0; i < pshape[0]; i++) {
    long best = 0;
    for (long c = 1; c < pshape[1]; c++)
      if (probs[i * pshape[1] + c] > probs[i * pshape[1] + best]) best = c;
    printf("row %ld: class %ld (p = %.4f)\n", i, best, probs[i * pshape[1] + best]);
  }
  if (argc == 3) {
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(probs, sizeof probs, 1, f) != 1 || fclose(f)) {
      fprintf(stderr, "host_aot: cannot write %s\n", argv[2]);
      return 1;
    }
  }
  return 0;
}
