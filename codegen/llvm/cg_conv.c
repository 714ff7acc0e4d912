/* cg_conv.c -- CPU kernels of the convolution's backward ops, plain C the
 * generated code calls (lathe_conv_dx, lathe_conv_dw; cg_jit.c resolves the
 * names), as cg_attn.c does for the sequence layers.
 *
 * Both are GEMMs over im2col matrices, as the forward conv in cg_ops.c:
 *   dW[O, C*k*k]  += dy[O, P] @ col(x)[C*k*k, P]^T
 *   col[C*k*k, P]  = W^T[C*k*k, O] @ dy[O, P], then col2im adds col into dx
 * with P = OH*OW. Small images make per-image products too small for
 * OpenBLAS to be efficient, so the images go in chunks of nb (fixed at
 * compile time from the shapes: the summation order never depends on the
 * run) with the chunk's columns side by side: col [C*k*k, nb*P] and dy
 * regrouped channel-major into [O, nb*P]. Scratch holds both.
 */
#include "cg_internal.h"

#include <cblas.h>
#include <string.h>

/* a chunk's scratch is at most this many floats (unless one image needs more) */
enum { CONV_CHUNK_FLOATS = 1 << 21 };

typedef struct {
  int64_t N, C, H, W, O, K, OH, OW, s, pad;
} conv_dims;

static int64_t conv_chunk(const conv_dims *d) {
  int64_t per = (d->C * d->K * d->K + d->O) * d->OH * d->OW, nb = per > 0 ? CONV_CHUNK_FLOATS / per : d->N;
  return nb < 1 ? 1 : nb > d->N ? (d->N > 0 ? d->N : 1) : nb;
}

static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* cblas requires K >= 1: C = beta C */
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              1.0f, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* Output positions o in [0, n) whose input o*s + off lies in [0, lim). */
static void valid_range(int64_t n, int64_t s, int64_t off, int64_t lim, int64_t *lo, int64_t *hi) {
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s, b = lim - off <= 0 ? 0 : (lim - off + s - 1) / s;
  *lo = a < n ? a : n;
  *hi = b < n ? b : n;
  if (*hi < *lo) *hi = *lo;
}

/* col rows (c, ky, kx), columns [i*P, (i+1)*P) of each image i < nb (row
 * stride ld) := x's patches; 0 where they fall into the padding */
static void im2col(const conv_dims *d, const float *x, int64_t nb, float *col, int64_t ld) {
  int64_t P = d->OH * d->OW, HW = d->H * d->W;
  for (int64_t i = 0; i < nb; i++)
    for (int64_t c = 0; c < d->C; c++)
      for (int64_t ky = 0; ky < d->K; ky++)
        for (int64_t kx = 0; kx < d->K; kx++) {
          const float *plane = x + (i * d->C + c) * HW;
          float *row = col + ((c * d->K + ky) * d->K + kx) * ld + i * P;
          int64_t x0, x1;
          valid_range(d->OW, d->s, kx - d->pad, d->W, &x0, &x1);
          for (int64_t oy = 0; oy < d->OH; oy++) {
            float *r = row + oy * d->OW;
            int64_t y = oy * d->s + ky - d->pad;
            if (y < 0 || y >= d->H) {
              memset(r, 0, sizeof(float) * (size_t)d->OW);
              continue;
            }
            const float *src = plane + y * d->W;
            int64_t off = kx - d->pad;
            for (int64_t ox = 0; ox < x0; ox++) r[ox] = 0.0f;
            for (int64_t ox = x0; ox < x1; ox++) r[ox] = src[ox * d->s + off];
            for (int64_t ox = x1; ox < d->OW; ox++) r[ox] = 0.0f;
          }
        }
}

/* dx (nb images, zeroed here) += col2im(col): the adjoint of im2col */
static void col2im(const conv_dims *d, const float *col, int64_t nb, int64_t ld, float *dx) {
  int64_t P = d->OH * d->OW, HW = d->H * d->W;
  memset(dx, 0, sizeof(float) * (size_t)(nb * d->C * HW));
  for (int64_t i = 0; i < nb; i++)
    for (int64_t c = 0; c < d->C; c++)
      for (int64_t ky = 0; ky < d->K; ky++)
        for (int64_t kx = 0; kx < d->K; kx++) {
          float *plane = dx + (i * d->C + c) * HW;
          const float *row = col + ((c * d->K + ky) * d->K + kx) * ld + i * P;
          int64_t x0, x1;
          valid_range(d->OW, d->s, kx - d->pad, d->W, &x0, &x1);
          for (int64_t oy = 0; oy < d->OH; oy++) {
            int64_t y = oy * d->s + ky - d->pad;
            if (y < 0 || y >= d->H) continue;
            const float *r = row + oy * d->OW;
            float *dst = plane + y * d->W;
            int64_t off = kx - d->pad;
            for (int64_t ox = x0; ox < x1; ox++) dst[ox * d->s + off] += r[ox];
          }
        }
}

/* dyc[O, nb*P] := the nb images of dy [nb, O, P], channel-major */
static void regroup(const conv_dims *d, const float *dy, int64_t nb, float *dyc) {
  int64_t P = d->OH * d->OW;
  for (int64_t i = 0; i < nb; i++)
    for (int64_t o = 0; o < d->O; o++)
      memcpy(dyc + o * nb * P + i * P, dy + (i * d->O + o) * P, sizeof(float) * (size_t)P);
}

static conv_dims dims_of(const int64_t *v) {
  conv_dims d = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
  return d;
}

void cg_conv_dx_rt(float *dx, const float *dy, const float *w, float *scr, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t O, int64_t K, int64_t OH, int64_t OW, int64_t s, int64_t pad) {
  conv_dims d = dims_of((int64_t[]){N, C, H, W, O, K, OH, OW, s, pad});
  int64_t nb = conv_chunk(&d), P = OH * OW, CKK = C * K * K;
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    int64_t m = N - n0 < nb ? N - n0 : nb;
    float *dyc = scr, *col = scr + O * m * P;
    regroup(&d, dy + n0 * O * P, m, dyc);
    gemm(1, 0, CKK, m * P, O, w, CKK, dyc, m * P, 0.0f, col, m * P);
    col2im(&d, col, m, m * P, dx + n0 * C * H * W);
  }
}

void cg_conv_dw_rt(float *dw, const float *x, const float *dy, float *scr, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t O, int64_t K, int64_t OH, int64_t OW, int64_t s, int64_t pad) {
  conv_dims d = dims_of((int64_t[]){N, C, H, W, O, K, OH, OW, s, pad});
  int64_t nb = conv_chunk(&d), P = OH * OW, CKK = C * K * K;
  memset(dw, 0, sizeof(float) * (size_t)(O * CKK));
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    int64_t m = N - n0 < nb ? N - n0 : nb;
    float *dyc = scr, *col = scr + O * m * P;
    regroup(&d, dy + n0 * O * P, m, dyc);
    im2col(&d, x + n0 * C * H * W, m, col, m * P);
    gemm(0, 1, O, CKK, m * P, dyc, m * P, col, m * P, 1.0f, dw, CKK);
  }
}

/* ---- emitters ---- */

int64_t cg_conv_scratch_bytes(const ir_graph *g, const ir_node *n) {
  int dx = n->op == IR_CONV2D_GRAD_INPUT;
  const ir_shape *sx = dx ? &n->shape : &g->nodes[n->in[0]].shape;
  const ir_shape *sw = dx ? &g->nodes[n->in[1]].shape : &n->shape;
  const ir_shape *sy = &g->nodes[n->in[dx ? 0 : 1]].shape;
  conv_dims d = {sx->d[0], sx->d[1], sx->d[2], sx->d[3], sw->d[0], sw->d[2], sy->d[2], sy->d[3], 1, 0};
  return 4 * conv_chunk(&d) * (d.C * d.K * d.K + d.O) * d.OH * d.OW;
}

/* Emits the call for CONV2D_GRAD_INPUT / _WEIGHT and returns 1, or returns
 * 0 (emitting nothing) when an operand is not f32: the caller's generated
 * loops handle those. */
int cg_emit_conv_grad(cg_k *k) {
  for (int a = 0; a < 3; a++)
    if (k->dt[a] != IR_F32) return 0;
  int dx = k->n->op == IR_CONV2D_GRAD_INPUT;
  const ir_shape *sx = dx ? &k->n->shape : k->sh[1], *sw = dx ? k->sh[2] : &k->n->shape;
  const ir_shape *sy = k->sh[dx ? 1 : 2];
  int64_t ints[10] = {sx->d[0], sx->d[1], sx->d[2], sx->d[3], sw->d[0], sw->d[2],
                      sy->d[2], sy->d[3], k->n->attr.stride, k->n->attr.pad};
  LLVMTypeRef ty[14];
  V args[14] = {k->arg[0], k->arg[1], k->arg[2], k->scratch};
  for (int i = 0; i < 4; i++) ty[i] = k->m->ptr;
  for (int i = 0; i < 10; i++) ty[4 + i] = k->m->i64, args[4 + i] = ci(k, ints[i]);
  const char *name = dx ? "lathe_conv_dx" : "lathe_conv_dw";
  cg_fn f = {LLVMGetNamedFunction(k->m->M, name), LLVMFunctionType(k->m->vd, ty, 14, 0)};
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, name, f.ty);
  cg_call(k, f, args, 14);
  return 1;
}
