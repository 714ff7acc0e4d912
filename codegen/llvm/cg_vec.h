/* cg_vec.h -- vectorised elementwise maps and strided reductions shared by
 * the forward emitters (cg_ops.c) and the backward ones (cg_grad.c), in the
 * vocabulary of cg_internal.h. Both split big work across the runtime pool
 * in parts fixed at compile time from the shapes, so results never depend
 * on thread timing; small work stays on the calling thread, as handing a
 * part to a sleeping worker costs 70-160 us.
 */
#ifndef LATHE_CG_VEC_H
#define LATHE_CG_VEC_H

#include "cg_internal.h"

/* Work (elements times a per-element cost, 1 for a load, an add and a
 * store: about 0.06 ns with AVX-512) below which a loop stays on one thread:
 * about 250 us, twice what waking a worker can cost. */
enum { CG_PAR_WORK = 1 << 22 };

/* body(k, i, w, ctx) for i in [0, n) in vectors of w lanes (cg_vfor), split
 * into chunks over the pool when n * cost >= CG_PAR_WORK. body reads and
 * writes through k->arg (it may run in an outlined part) and ctx must hold
 * no values of the calling function. */
void cg_vmap(cg_k *k, int64_t n, int64_t cost, cg_vbody body, void *ctx);

/* A strided reduction over a contiguous f32 tensor x (kernel argument xa)
 * into y (argument ya): x's elements are addressed by three loop nests,
 *   outer: dims od with x strides oxs and y strides oys (kept, not reduced)
 *   red:   dims rd with x strides rs (reduced)
 *   N columns contiguous in both x and y (kept)
 * y[outer, j] = op over red of x[outer, red, j]. op: IR_SUM, IR_MEAN (sum
 * times scale) or IR_MAX (NaN wins, as cg_fmax_nan). Sums accumulate in
 * double in the order of the red nest, as the reference interpreter. */
typedef struct {
  int nout, nred;
  int64_t od[IR_MAXDIM], oxs[IR_MAXDIM], oys[IR_MAXDIM];
  int64_t rd[IR_MAXDIM], rs[IR_MAXDIM];
  int64_t N;
  int op;
  double scale;
} cg_colred;
void cg_emit_colred(cg_k *k, const cg_colred *r, int xa, int ya);

/* y[outer] = sum over red and the L contiguous elements of x (double
 * accumulators, vector lanes folded in a fixed order); outer and red as in
 * cg_colred, N unused. */
void cg_emit_rowsum(cg_k *k, const cg_colred *r, int64_t L, int xa, int ya);

/* (u's mixed-radix digits over dims d[0..n)) . s1 and . s2: the offsets of
 * flat index u in two layouts */
void cg_unflatten(cg_k *k, V u, int n, const int64_t *d, const int64_t *s1, const int64_t *s2, V *o1, V *o2);

/* ---- cg_pool.c ---- */

/* Max or average pooling (grad: its gradient) when the windows tile the
 * image exactly (stride = window, H = OH k, W = OW k, OW <= the vector
 * width): emits the kernel and returns 1; else 0, emitting nothing. */
int cg_emit_pool_tiled(cg_k *k, int is_max, int grad);

#endif
