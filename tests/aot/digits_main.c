/* digits_main.c -- a host program for the emitted digits MLP
 * (examples/mlp.nn emitted by tests/emit.sh with --bind batch=BATCH): it
 * links libmlp.a and liblathe_rt only.
 *
 *   digits_main gen N X.npy        write a deterministic f32[N, 64] input (pixel values 0..16)
 *   digits_main run X.npy P.raw    mlp_forward on X; P.raw: the probabilities' raw bytes.
 *                                  Also checks mlp_forward_ws (misaligned workspace) gives the
 *                                  same bits, and with two threads too.
 *   digits_main load W [X P]       (-DWEIGHTS_FILE) mlp_load_weights(W), then as run
 * Exit 0 on success; messages on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

enum { FEAT = 64, CLASSES = 10 };

static int gen(long n, const char *path) {
  char hdr[118];
  int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%ld, %d), }", n, FEAT);
  memset(hdr + len, ' ', sizeof hdr - (size_t)len - 1);
  hdr[sizeof hdr - 1] = '\n';
  FILE *f = fopen(path, "wb");
  if (!f) return 1;
  fwrite("\x93NUMPY\x01\x00\x76\x00", 1, 10, f);
  fwrite(hdr, 1, sizeof hdr, f);
  uint32_t s = 12345;
  for (long i = 0; i < n * FEAT; i++) {
    s = s * 1664525u + 1013904223u;
    float v = (float)(s >> 28); /* 0..15, as the digits' pixels */
    fwrite(&v, 4, 1, f);
  }
  return fclose(f) != 0;
}

/* The data of an f32 .npy file (version 1 header), n values expected. */
static float *read_npy(const char *path, long n) {
  FILE *f = fopen(path, "rb");
  unsigned char pre[10];
  float *x = malloc(sizeof *x * (size_t)n);
  if (!f || !x || fread(pre, 1, 10, f) != 10 || fseek(f, 10 + pre[8] + 256 * pre[9], SEEK_SET) ||
      fread(x, sizeof *x, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "digits_main: cannot read %ld floats from %s\n", n, path);
    free(x);
    x = NULL;
  }
  if (f) fclose(f);
  return x;
}

static int run(const char *in, const char *out) {
  long n = (long)BATCH;
  float *x = read_npy(in, n * FEAT);
  float *p = calloc((size_t)n * CLASSES, sizeof *p), *q = calloc((size_t)n * CLASSES, sizeof *q);
  unsigned char *ws = malloc(MLP_WORKSPACE_BYTES + 1);
  if (!x || !p || !q || !ws) return 1;
  int rc = mlp_forward(x, p);
  if (rc) {
    fprintf(stderr, "mlp_forward: %d: %s\n", rc, lathe_rt_strerror(rc));
    return 1;
  }
  mlp_inputs ins = {x};
  mlp_outputs outs = {q};
  rc = mlp_forward_ws(&ins, &outs, ws + 1); /* any alignment */
  int fails = rc != 0 || memcmp(p, q, sizeof *p * (size_t)n * CLASSES) != 0;
  if (fails) fprintf(stderr, "mlp_forward_ws: rc %d or other bits than mlp_forward\n", rc);
  if (mlp_set_threads(2) < 1 || mlp_forward(x, q) || memcmp(p, q, sizeof *p * (size_t)n * CLASSES)) {
    fprintf(stderr, "mlp_forward on two threads: other bits\n");
    fails++;
  }
  mlp_set_threads(1);
  mlp_outputs none = {NULL};
  if (mlp_forward_ws(&ins, &none, ws) == 0) {
    fprintf(stderr, "mlp_forward_ws accepted a NULL output\n");
    fails++;
  }
  FILE *f = fopen(out, "wb");
  if (!f || fwrite(p, sizeof *p, (size_t)n * CLASSES, f) != (size_t)n * CLASSES || fclose(f)) return 1;
  free(x), free(p), free(q), free(ws);
  return fails != 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "gen")) return gen(atol(argv[2]), argv[3]);
#ifdef WEIGHTS_FILE
  if (argc >= 3 && !strcmp(argv[1], "load")) {
    int rc = mlp_load_weights(argv[2]);
    if (rc) {
      fprintf(stderr, "mlp_load_weights: %d: %s: %s\n", rc, lathe_rt_strerror(rc), lathe_rt_last_error());
      return 3;
    }
    return argc == 5 ? run(argv[3], argv[4]) : 0;
  }
  if (argc == 4 && !strcmp(argv[1], "run")) { /* without loading: must refuse */
    float x[FEAT * BATCH] = {0}, p[CLASSES * BATCH];
    int rc = mlp_forward(x, p);
    fprintf(stderr, "mlp_forward without weights: %d: %s\n", rc, lathe_rt_strerror(rc));
    return rc == 0 ? 1 : 4;
  }
#else
  if (argc == 4 && !strcmp(argv[1], "run")) return run(argv[2], argv[3]);
#endif
  fprintf(stderr, "usage: digits_main gen N X.npy | run X.npy P.raw | load W [X.npy P.raw]\n");
  return 2;
}
