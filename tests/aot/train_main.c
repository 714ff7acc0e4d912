/* train_main.c -- a host program for the digits MLP's emitted training step
 * (examples/mlp.nn emitted by tests/emit_train.sh with --entry train_step
 * --bind batch=64): it links libmlp.a and liblathe_rt only, and trains the
 * way lathe train --in-order does: the first NTRAIN rows of the CSV, in file
 * order, batch after batch (the last partial batch dropped), EPOCHS times.
 *
 *   train_main train CSV NTRAIN EPOCHS OUT [FROM]   train (from state file FROM, else the emitted
 *                                                    weights), print each step's loss, save OUT
 *   train_main load FILE                            mlp_state_load(FILE): exit 3 and the message if refused
 *   train_main bad CSV                              steps that must fail (a label out of range, an
 *                                                   infinite input, NULL data) leave the state unchanged
 * With -DWEIGHTS_FILE the weights come from mlp.weights beside the object
 * (WEIGHTS in the environment names it). Exit 0 on success. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

enum { FEAT = 64, B = 64 };

/* rows of "f0,...,f63,label" */
static long read_csv(const char *path, float **x, int32_t **y) {
  FILE *f = fopen(path, "r");
  long n = 0, cap = 2048;
  *x = malloc(sizeof **x * FEAT * (size_t)cap);
  *y = malloc(sizeof **y * (size_t)cap);
  if (!f || !*x || !*y) return -1;
  for (;;) {
    float v[FEAT + 1];
    int k = 0;
    for (; k <= FEAT; k++)
      if (fscanf(f, k ? ",%f" : "%f", &v[k]) != 1) break;
    if (k == 0) break;
    if (k != FEAT + 1 || n == cap) {
      fclose(f);
      return -1;
    }
    memcpy(*x + n * FEAT, v, sizeof(float) * FEAT);
    (*y)[n++] = (int32_t)v[FEAT];
  }
  fclose(f);
  return n;
}

static mlp_state *new_state(const char *from) {
  mlp_state *st = malloc(sizeof *st);
  int rc = st ? 0 : 1;
#ifdef WEIGHTS_FILE
  if (rc == 0 && (rc = mlp_load_weights(getenv("WEIGHTS")))) fprintf(stderr, "mlp_load_weights: ");
#endif
  if (rc == 0 && (rc = mlp_state_init(st))) fprintf(stderr, "mlp_state_init: ");
  if (rc == 0 && from && (rc = mlp_state_load(st, from))) fprintf(stderr, "mlp_state_load: ");
  if (rc) {
    fprintf(stderr, "%d: %s: %s\n", rc, lathe_rt_strerror(rc), lathe_rt_last_error());
    free(st);
    return NULL;
  }
  return st;
}

static int train(const char *csv, long ntrain, long epochs, const char *out, const char *from) {
  float *x;
  int32_t *y;
  long n = read_csv(csv, &x, &y);
  mlp_state *st = n >= ntrain && ntrain >= B ? new_state(from) : NULL;
  if (!st) {
    fprintf(stderr, "train_main: cannot read %ld rows of %s, or no state\n", ntrain, csv);
    return 1;
  }
  long per_epoch = ntrain / B;
  st->steps_per_epoch = per_epoch; /* as lathe train sets them (the schedule is constant here) */
  st->total_steps = st->step + per_epoch * epochs;
  for (long e = 0; e < epochs; e++)
    for (long s = 0; s < per_epoch; s++) {
      float loss = mlp_train_step(st, x + s * B * FEAT, y + s * B);
      if (isnan(loss)) {
        fprintf(stderr, "mlp_train_step: %s\n", lathe_rt_last_error());
        return 1;
      }
      printf("step %lld loss %.9g\n", (long long)st->step, loss);
    }
  int rc = mlp_state_save(st, out);
  if (rc) fprintf(stderr, "mlp_state_save: %d: %s: %s\n", rc, lathe_rt_strerror(rc), lathe_rt_last_error());
  free(st), free(x), free(y);
  return rc != 0;
}

/* Failing steps: NaN, a message, and not one byte of the state changed. */
static int bad(const char *csv) {
  float *x;
  int32_t *y;
  long n = read_csv(csv, &x, &y);
  mlp_state *st = n >= B ? new_state(NULL) : NULL, *copy = malloc(sizeof *copy);
  if (!st || !copy) return 1;
  int fails = 0;
  float loss = mlp_train_step(st, x, y); /* one good step first: the state has moments and a step count */
  memcpy(copy, st, sizeof *st);
  y[3] = 10; /* 10 classes: out of range */
  loss = mlp_train_step(st, x, y);
  if (!isnan(loss) || !strstr(lathe_rt_last_error(), "label") || memcmp(copy, st, sizeof *st))
    fprintf(stderr, "a label out of range: loss %g, '%s'\n", loss, lathe_rt_last_error()), fails++;
  y[3] = 0;
  x[5] = INFINITY;
  loss = mlp_train_step(st, x, y);
  if (!isnan(loss) || !strstr(lathe_rt_last_error(), "loss is nan") || memcmp(copy, st, sizeof *st))
    fprintf(stderr, "an infinite input: loss %g, '%s'\n", loss, lathe_rt_last_error()), fails++;
  x[5] = 0;
  loss = mlp_train_step(st, x, NULL);
  if (!isnan(loss) || !strstr(lathe_rt_last_error(), "NULL") || memcmp(copy, st, sizeof *st))
    fprintf(stderr, "NULL targets: loss %g, '%s'\n", loss, lathe_rt_last_error()), fails++;
  loss = mlp_train_step(st, x, y);
  if (isnan(loss) || st->step != 2) fprintf(stderr, "a good step after the bad ones failed\n"), fails++;
  if (mlp_state_save(st, "/nonexistent-dir/s.safetensors") == 0 ||
      !strstr(lathe_rt_last_error(), "s.safetensors"))
    fprintf(stderr, "saving to a missing directory: '%s'\n", lathe_rt_last_error()), fails++;
  free(st), free(copy), free(x), free(y);
  return fails != 0;
}

int main(int argc, char **argv) {
  if ((argc == 6 || argc == 7) && !strcmp(argv[1], "train"))
    return train(argv[2], atol(argv[3]), atol(argv[4]), argv[5], argc == 7 ? argv[6] : NULL);
  if (argc == 3 && !strcmp(argv[1], "load")) {
    mlp_state *st = new_state(NULL);
    if (!st) return 1;
    memset(st->fc1_weight, 0x7f, sizeof st->fc1_weight);
    mlp_state *copy = malloc(sizeof *copy);
    memcpy(copy, st, sizeof *st);
    int rc = mlp_state_load(st, argv[2]);
    if (rc) {
      fprintf(stderr, "mlp_state_load: %d: %s: %s\n", rc, lathe_rt_strerror(rc), lathe_rt_last_error());
      rc = memcmp(copy, st, sizeof *st) ? 4 : 3; /* 4: a refused file changed the state */
    } else {
      printf("step %lld\n", (long long)st->step);
    }
    free(st), free(copy);
    return rc;
  }
  if (argc == 3 && !strcmp(argv[1], "bad")) return bad(argv[2]);
  fprintf(stderr, "usage: train_main train CSV NTRAIN EPOCHS OUT [FROM] | load FILE | bad CSV\n");
  return 2;
}
