/* rng.c -- Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011), a counter-based generator: the
 * value at position i depends only on (key, i), so every backend and every
 * thread schedule can reproduce any element without sequential state.
 *
 * The stream, exactly (backends that reimplement it must match):
 *   key        = seed XOR mix64(stream)            (mix64: SplitMix64 finaliser; mix64(0) = 0)
 *   u32 number i of the stream is word (i % 4) of
 *              philox4x32_10(ctr = {lo(i/4), hi(i/4), 0, 0}, key = {lo(key), hi(key)})
 *   uniform    = ((a >> 5) * 2^26 + (b >> 6)) / 2^53 from two consecutive u32 a, b
 *   normal     = sqrt(-2 ln(1 - u1)) * cos(2 pi u2) from two consecutive uniforms
 * Parameter p of a model seeded with S uses stream FNV-1a-64(p.name).
 */
#include <math.h>
#include <string.h>

#include "ir.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_round(uint32_t c[4], const uint32_t k[2]) {
  uint64_t p0 = (uint64_t)PHILOX_M0 * c[0], p1 = (uint64_t)PHILOX_M1 * c[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  uint32_t n0 = hi1 ^ c[1] ^ k[0], n2 = hi0 ^ c[3] ^ k[1];
  c[0] = n0, c[1] = lo1, c[2] = n2, c[3] = lo0;
}

/* Exposed for the known-answer test, not in ir.h. */
void ir_philox4x32_10(uint32_t ctr[4], const uint32_t key[2]);
void ir_philox4x32_10(uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t k[2] = {key[0], key[1]};
  for (int r = 0; r < 10; r++) {
    if (r) k[0] += PHILOX_W0, k[1] += PHILOX_W1;
    philox_round(ctr, k);
  }
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void ir_rng_seed(ir_rng *r, uint64_t seed, uint64_t stream) {
  r->key = seed ^ mix64(stream);
  r->counter = 0;
}

uint32_t ir_rng_u32(ir_rng *r) {
  uint64_t block = r->counter >> 2;
  uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
  uint32_t k[2] = {(uint32_t)r->key, (uint32_t)(r->key >> 32)};
  ir_philox4x32_10(c, k);
  return c[r->counter++ & 3];
}

double ir_rng_uniform(ir_rng *r) {
  uint32_t a = ir_rng_u32(r) >> 5, b = ir_rng_u32(r) >> 6;
  return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

double ir_rng_normal(ir_rng *r) {
  double u1 = ir_rng_uniform(r), u2 = ir_rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586476925 * u2);
}

static uint64_t fnv1a64(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

void ir_param_init_values(const ir_param *p, uint64_t seed, float *out) {
  int64_t n = ir_numel(&p->shape);
  ir_rng r;
  ir_rng_seed(&r, seed, fnv1a64(p->name));
  double fans = (double)(p->fan_in + p->fan_out), fan_in = (double)p->fan_in;
  double xavier = sqrt(6.0 / (fans > 0 ? fans : 1.0)), he = sqrt(2.0 / (fan_in > 0 ? fan_in : 1.0));
  for (int64_t i = 0; i < n; i++) {
    double v = 0;
    switch (p->init) {
      case IR_INIT_ZEROS: v = 0; break;
      case IR_INIT_ONES: v = 1; break;
      case IR_INIT_NORMAL: v = p->std * ir_rng_normal(&r); break;
      case IR_INIT_XAVIER: v = xavier * (2 * ir_rng_uniform(&r) - 1); break;
      case IR_INIT_HE: v = he * ir_rng_normal(&r); break;
      case IR_INIT_UNIFORM: v = p->std * (2 * ir_rng_uniform(&r) - 1); break;
    }
    out[i] = (float)v;
  }
}
