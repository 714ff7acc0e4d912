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
 * times scale) or IR_MAX / IR_MIN (NaN wins, as cg_fmax_nan / cg_fmin_nan). Sums accumulate in
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

/* ---- rows whose length is known at compile time ----
 * A contiguous f32 row of L floats as nv vectors of w lanes: w is the
 * vector width, or the smallest power of two >= L when that is narrower,
 * so a short row (10 classes) is one vector instead of a scalar tail; when
 * w does not divide L the last vector is a masked load / store (tail: its
 * live lanes, NULL when it is full). */
typedef struct {
  int64_t L;
  int w, nv;
  V tail;
} cg_row;
cg_row cg_row_of(cg_k *k, int64_t L);
/* vector j's w lanes at ((float *)p)[idx] (masked lanes read as 0); last:
 * this is the row's last vector */
V cg_row_ld(cg_k *k, const cg_row *r, V p, V idx, int last);
void cg_row_st(cg_k *k, const cg_row *r, V p, V idx, V v, int last);
/* v with the last vector's dead lanes set to pad (v itself otherwise) */
V cg_row_live(cg_k *k, const cg_row *r, V v, int last, double pad);
/* lanes idx .. idx + w - 1 as an <w x i32> (i32 for w == 1) */
V cg_row_lanes(cg_k *k, const cg_row *r, V idx);
/* The lanes of v (a vector or a scalar) folded by halves: a tree in a
 * fixed order, so reruns are bit-identical (log2 w steps, not w). */
V cg_vfold(cg_k *k, V v, cg_fold_fn f);

/* body(k, idx, j, last, ctx) for each vector of a row at float offset idx:
 * j = 0 .. nv-1 unrolled when the row fits in CG_ROW_REGS vectors (so its
 * values can stay in registers between passes), else j = -1 in a loop over
 * the whole vectors and once more with last = 1 for a masked tail. */
enum { CG_ROW_REGS = 8 };
typedef void (*cg_row_fn)(cg_k *k, V idx, int j, int last, void *ctx);
void cg_row_each(cg_k *k, const cg_row *r, cg_row_fn body, void *ctx);

/* A row's softmax statistics: m = its max (NaN never taken, as the
 * reference), sum = the sum of exp(x - m) in double, and with all set the
 * plain sum of x in double. Rows in registers keep x and exp(x - m) in
 * xv[j] and ev[j]; longer rows store exp(x - m) to ey (when not NULL),
 * which may be x itself (each element is read before it is written). */
typedef struct {
  cg_row r;
  V x, ey;
  int all_too;
  V m, sum, all;
  V xv[CG_ROW_REGS], ev[CG_ROW_REGS];
} cg_rowstat;
void cg_row_stats(cg_k *k, cg_rowstat *s);
/* exp(x - m) of vector j at idx after cg_row_stats: from registers, ey, or recomputed */
V cg_row_exp(cg_k *k, const cg_rowstat *s, V idx, int j, int last);

/* x's vector j at idx after cg_row_stats: from registers or reloaded */
V cg_row_x(cg_k *k, const cg_rowstat *s, V idx, int j, int last);

/* body(k, r, ctx) for each of rows rows of L elements, split over the pool
 * (cg_parallel_for: ctx must hold no values of the calling function) when
 * rows * L * cost >= CG_PAR_WORK, else a loop on the calling thread */
int cg_rows_parallel(int64_t rows, int64_t L, int64_t cost);
void cg_rows_for(cg_k *k, int64_t rows, int64_t L, int64_t cost, cg_par_body body, void *ctx);

/* *err = 2 when a label (kernel argument a, rows of them) is not in [0, C):
 * one pass before the rows, so parallel rows never race on the flag */
void cg_check_labels(cg_k *k, int a, int64_t rows, int64_t C);

/* whether any of the rows labels at kernel argument a equals v (an i1) */
V cg_any_label(cg_k *k, int a, int64_t rows, int64_t v);

/* yes(k) where cond (an i1) holds, else no(k); the builder then continues
 * after both */
void cg_if_else(cg_k *k, V cond, void (*yes)(cg_k *k), void (*no)(cg_k *k));

#endif
