/* cg_conv.c -- the convolution's kernels: conv2d and its backward ops as
 * im2col GEMMs over chunks of the batch, emitted as IR (every dimension is
 * known at compile time: the copies are straight vector code). The geometry
 * (1-d or 2-d, dilation, groups) is ir/conv.h's.
 *
 * With P = OH*OW output positions, KK = KH*KW taps and the im2col matrix
 * col[C*KK, nb*P] of a chunk of nb images side by side (fixed at compile
 * time from the shapes: the summation order never depends on the run), per
 * group g (its Cg*KK rows of col, its Og rows of W, dy and out):
 *   forward  out[Og, nb*P] = W[Og, Cg*KK] @ col, regrouped to [nb, O, P] + bias
 *   dW[Og, Cg*KK]        += dy[Og, nb*P] @ col^T  (dy regrouped channel-major)
 *   col                   = W^T @ dy, then col2im adds col into dx
 * One GEMM per chunk instead of one per image: small images make per-image
 * products too small to be efficient. Padding: the chunk's images are
 * first copied into a zeroed buffer big enough that every window lies
 * inside (dx: accumulated there, then cropped), so the copies have no
 * bounds to check.
 */
#include "cg_conv.h"
#include "ir/conv.h"

/* ---- the emitted kernels ---- */

typedef struct {
  int64_t N, C, H, W, O, KH, KW, OH, OW, s, dil, padT, padL, G, Cg, Og;
  int64_t Hq, Wq; /* the padded image: x at row padT, column padL; every window inside */
  int padded;     /* images go through a padded copy (else windows read x directly) */
  int64_t P, CKK, GKK, nb; /* GKK = Cg*KK: one group's rows of col */
  int64_t par;             /* forward: full chunks run as parallel parts, each with its own scratch (0: a loop) */
  int fwd;                 /* the forward: col's rows padded off powers of two (cv_ld) */
} cv_t;

/* Floats of scratch per chunk (the padded images, col and the product or
 * dy), measured on the 8x8 digits CNN: the forward's GEMM wants a wide
 * chunk; dW = dy col^T is faster as many products with a short inner
 * dimension than one long one (OpenBLAS with O x C*k*k tiny). */
enum { CV_FWD_FLOATS = 1 << 18, CV_DX_FLOATS = 1 << 16, CV_DW_FLOATS = 1 << 13 };

/* A forward of at least this many multiply-adds is cut into CV_PAR_CHUNKS
 * chunks or more that run as parts of the pool: each part's im2col, product
 * and copy-out, not only the product, use a core (the digits CNN's conv2d
 * at batch 128: two chunks of 64 images). Fixed from the shapes: the
 * results do not depend on the thread count. */
enum { CV_PAR_MACS = 1 << 21, CV_PAR_CHUNKS = 2 };

static cv_t cv_make(const ir_shape *sx, const ir_shape *sw, const ir_attr *a, int64_t cap) {
  ir_conv c = {0};
  char msg[256];
  if (ir_conv_geom(sx, sw, a, &c, msg, sizeof msg)) IR_UNREACHABLE("cg_conv: not a convolution (the verifier passed it)");
  cv_t d = {c.N, c.C, c.H, c.W, c.O, c.KH, c.KW, c.OH, c.OW, c.s, c.dil, c.padT, c.padL, c.G, c.Cg, c.Og,
            0, 0, 0, 0, 0, 0, 0, 0, 0};
  int64_t hr = (d.OH - 1) * d.s + (d.KH - 1) * d.dil + 1, wr = (d.OW - 1) * d.s + (d.KW - 1) * d.dil + 1; /* extents the windows read */
  d.Hq = hr > d.H + d.padT ? hr : d.H + d.padT;
  d.Wq = wr > d.W + d.padL ? wr : d.W + d.padL;
  d.padded = d.padT > 0 || d.padL > 0 || d.Hq != d.H || d.Wq != d.W;
  d.P = d.OH * d.OW, d.CKK = d.C * d.KH * d.KW, d.GKK = d.Cg * d.KH * d.KW;
  int64_t per = (d.padded ? d.C * d.Hq * d.Wq : 0) + (d.CKK + d.O) * d.P;
  d.nb = per > 0 ? cap / per : d.N;
  d.nb = d.nb < 1 ? 1 : d.nb > d.N ? d.N : d.nb;
  return d;
}

/* the forward's chunks: at least CV_PAR_CHUNKS of equal size when the
 * product is big enough, run in parallel (d->par of them) */
static void cv_fwd_split(cv_t *d) {
  int64_t macs = d->N * d->O * d->GKK * d->P, want = (d->N + d->nb - 1) / d->nb;
  if (macs < CV_PAR_MACS || d->N < CV_PAR_CHUNKS) return;
  want = want < CV_PAR_CHUNKS ? CV_PAR_CHUNKS : want;
  d->nb = d->N / want; /* the rest (N mod nb images) runs after the parts */
  d->par = d->N / d->nb;
}

/* x, w, y: the forward's input, weight and output shapes, whichever node */
static cv_t cv_of(const ir_graph *g, const ir_node *n) {
  const ir_shape *in0 = &g->nodes[n->in[0]].shape, *in1 = &g->nodes[n->in[1]].shape;
  if (n->op == IR_CONV2D) {
    cv_t d = cv_make(in0, in1, &n->attr, CV_FWD_FLOATS);
    d.fwd = 1;
    cv_fwd_split(&d);
    return d;
  }
  if (n->op == IR_CONV2D_GRAD_INPUT) return cv_make(&n->shape, in1, &n->attr, CV_DX_FLOATS);
  return cv_make(in0, &n->shape, &n->attr, CV_DW_FLOATS); /* grad weight: (x, dy) */
}

/* The row stride of col and of the product for a chunk of m images: m*P,
 * in the forward padded by 16 floats when that is a multiple of 256: rows
 * a power-of-two apart map to the same cache sets, and OpenBLAS's packing
 * of col down its columns then misses (measured: the digits CNN's conv2d
 * at 64 images a chunk, 1024-float rows, ran 1.6x slower than at 77). */
static int64_t cv_ld(const cv_t *d, int64_t m) { return m * d->P + (d->fwd && m * d->P % 256 == 0 ? 16 : 0); }

/* scratch: [the padded images] [col: CKK x ld] [O x ld: the product or dy] */
static int64_t cv_pad_floats(const cv_t *d) { return d->padded ? d->nb * d->C * d->Hq * d->Wq : 0; }
static V cv_scr(cg_k *k, int64_t float_off) { return cg_fptr(k, k->scratch, ci(k, float_off)); }
static V cv_col(cg_k *k, const cv_t *d) { return cv_scr(k, cv_pad_floats(d)); }
static V cv_tmp(cg_k *k, const cv_t *d) { return cv_scr(k, cv_pad_floats(d) + d->CKK * cv_ld(d, d->nb)); }

/* Row operations: n elements, dst[di + j*ds] (op)= src[si + j*ss]. */
enum { RO_COPY, RO_ADD, RO_BIAS }; /* dst = src; dst += src; dst = src + bias */

typedef struct {
  int mode;
  V dst, di, src, si, bias;
  int epi; /* then the fused unary steps (the forward's copy-out of a conv2d+relu kernel) */
} row_t;

static void row_at(cg_k *k, const row_t *r, V j, int w) {
  V di = cg_add(k, r->di, j), si = cg_add(k, r->si, j);
  V v = cg_vld(k, r->src, si, w);
  if (r->mode == RO_ADD) v = cg_fadd(k, cg_vld(k, r->dst, di, w), v);
  else if (r->mode == RO_BIAS) v = cg_fadd(k, v, cg_bcast(k, r->bias, w));
  if (r->epi) v = cg_epi_unary(k, v, w);
  cg_vst(k, r->dst, di, v, w);
}

static void row_vbody(cg_k *k, V j, int w, void *ctx) { row_at(k, ctx, j, w); }

static void row_op(cg_k *k, const row_t *r, int64_t n, int64_t ds, int64_t ss) {
  if (ds == 1 && ss == 1) {
    if (n > 64) {
      cg_vfor(k, ci(k, n), row_vbody, (void *)r);
      return;
    }
    int64_t j = 0; /* short rows: straight-line vectors, widest first */
    for (int w = k->m->vw > 1 ? k->m->vw : 1; w >= 1; w /= 2)
      for (; n - j >= w; j += w) row_at(k, r, ci(k, j), w);
    return;
  }
  row_t e = *r; /* strided: one element at a time */
  if (n <= 16) {
    for (int64_t j = 0; j < n; j++) {
      e.di = cg_add(k, r->di, ci(k, j * ds)), e.si = cg_add(k, r->si, ci(k, j * ss));
      row_at(k, &e, ci(k, 0), 1);
    }
    return;
  }
  CG_FOR(k, j, ci(k, 0), ci(k, n)) {
    e.di = cg_add(k, r->di, cg_muli(k, j.iv, ds)), e.si = cg_add(k, r->si, cg_muli(k, j.iv, ss));
    row_at(k, &e, ci(k, 0), 1);
  }
}

static void zero_floats(cg_k *k, V p, int64_t n) {
  LLVMBuildMemSet(k->B, p, LLVMConstInt(k->m->i8, 0, 0), ci(k, 4 * n), 4);
}

/* The m images of [C, Hs, Ws] at img and col[CKK, m*P]: col2 = 0 copies
 * windows into col (im2col), 1 adds col back into the images (col2im). */
typedef struct {
  const cv_t *d;
  V img, col;
  int64_t Hs, Ws, m;
  int col2;
} win_t;

static void win_row(cg_k *k, const win_t *t, V sb, V cb, V ky, V kx, V oy) {
  const cv_t *d = t->d;
  int64_t ld = cv_ld(d, t->m);
  V at_img = cg_add(k, sb, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, oy, d->s), cg_muli(k, ky, d->dil)), t->Ws),
                                  cg_muli(k, kx, d->dil)));
  V at_col = cg_add(k, cb, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, ky, d->KW), kx), ld), cg_muli(k, oy, d->OW)));
  row_t r = {t->col2 ? RO_ADD : RO_COPY, t->col2 ? t->img : t->col, t->col2 ? at_img : at_col,
             t->col2 ? t->col : t->img, t->col2 ? at_col : at_img, NULL, 0};
  row_op(k, &r, d->OW, t->col2 ? d->s : 1, t->col2 ? 1 : d->s);
}

static void emit_windows(cg_k *k, const win_t *t) {
  const cv_t *d = t->d;
  int64_t ld = cv_ld(d, t->m), KK = d->KH * d->KW;
  CG_FOR(k, i, ci(k, 0), ci(k, t->m)) CG_FOR(k, c, ci(k, 0), ci(k, d->C)) {
    V sb = cg_muli(k, cg_add(k, cg_muli(k, i.iv, d->C), c.iv), t->Hs * t->Ws);
    V cb = cg_add(k, cg_muli(k, c.iv, KK * ld), cg_muli(k, i.iv, d->P));
    if (KK * d->OH <= 256) { /* small: every row's offsets are constants */
      for (int64_t ky = 0; ky < d->KH; ky++)
        for (int64_t kx = 0; kx < d->KW; kx++)
          for (int64_t oy = 0; oy < d->OH; oy++) win_row(k, t, sb, cb, ci(k, ky), ci(k, kx), ci(k, oy));
      continue;
    }
    CG_FOR(k, ky, ci(k, 0), ci(k, d->KH)) CG_FOR(k, kx, ci(k, 0), ci(k, d->KW)) CG_FOR(k, oy, ci(k, 0), ci(k, d->OH))
      win_row(k, t, sb, cb, ky.iv, kx.iv, oy.iv);
  }
}

/* dst[i, c, y, :] (images of [C, Hd, Wd], at row offset dpt and column
 * offset dpl) := src[i, c, y, :] (images of [C, Hs, Ws], offsets spt,
 * spl), H x W of each. */
static void copy_planes(cg_k *k, const cv_t *d, int64_t m, V dst, V dbase, int64_t Hd, int64_t Wd, int64_t dpt,
                        int64_t dpl, V src, V sbase, int64_t Hs, int64_t Ws, int64_t spt, int64_t spl) {
  CG_FOR(k, p, ci(k, 0), ci(k, m * d->C)) CG_FOR(k, y, ci(k, 0), ci(k, d->H)) {
    row_t r = {RO_COPY, dst, cg_add(k, dbase, cg_add(k, cg_muli(k, p.iv, Hd * Wd), cg_muli(k, cg_add(k, y.iv, ci(k, dpt)), Wd))),
               src, cg_add(k, sbase, cg_add(k, cg_muli(k, p.iv, Hs * Ws), cg_muli(k, cg_add(k, y.iv, ci(k, spt)), Ws))), NULL, 0};
    r.di = cg_add(k, r.di, ci(k, dpl)), r.si = cg_add(k, r.si, ci(k, spl));
    row_op(k, &r, d->W, 1, 1);
  }
}

/* col[CKK, m*P] := the windows of images n0 .. n0+m of x (argument xa) */
static void emit_im2col(cg_k *k, const cv_t *d, int xa, V n0, int64_t m) {
  win_t t = {d, k->arg[xa], cv_col(k, d), d->H, d->W, m, 0};
  V x0 = cg_muli(k, n0, d->C * d->H * d->W);
  if (d->padded) {
    V pad = cv_scr(k, 0);
    zero_floats(k, pad, m * d->C * d->Hq * d->Wq);
    copy_planes(k, d, m, pad, ci(k, 0), d->Hq, d->Wq, d->padT, d->padL, k->arg[xa], x0, d->H, d->W, 0, 0);
    t.img = pad, t.Hs = d->Hq, t.Ws = d->Wq;
  } else {
    t.img = cg_fptr(k, k->arg[xa], x0);
  }
  emit_windows(k, &t);
}

/* dyc[O, m*P] := dy's images n0 .. n0+m (argument ya), channel-major */
static void emit_dy_cols(cg_k *k, const cv_t *d, int ya, V n0, int64_t m) {
  V dyc = cv_tmp(k, d);
  CG_FOR(k, i, ci(k, 0), ci(k, m)) CG_FOR(k, o, ci(k, 0), ci(k, d->O)) {
    row_t r = {RO_COPY, dyc, cg_add(k, cg_muli(k, o.iv, m * d->P), cg_muli(k, i.iv, d->P)), k->arg[ya],
               cg_muli(k, cg_add(k, cg_muli(k, cg_add(k, n0, i.iv), d->O), o.iv), d->P), NULL, 0};
    row_op(k, &r, d->P, 1, 1);
  }
}

typedef void (*cv_chunk_fn)(cg_k *k, const cv_t *d, V n0, int64_t m);

/* The products of one chunk run per group: f(k, d, g, ld) with g the group
 * index (a constant, or a loop over many groups: depthwise convolutions). */
typedef void (*cv_group_fn)(cg_k *k, const cv_t *d, V g, int64_t n, int64_t ld);

/* n: the chunk's columns (m*P), ld: their row stride (cv_ld) */
static void cv_groups(cg_k *k, const cv_t *d, int64_t n, int64_t ld, cv_group_fn f) {
  if (d->G <= 4) {
    for (int64_t g = 0; g < d->G; g++) f(k, d, ci(k, g), n, ld);
    return;
  }
  CG_FOR(k, g, ci(k, 0), ci(k, d->G)) f(k, d, g.iv, n, ld);
}

/* group g's blocks: its rows of W [Og, GKK], of col [GKK, ld] and of the
 * product or dy [Og, ld] */
static V grp_w(cg_k *k, const cv_t *d, V w, V g) { return cg_fptr(k, w, cg_muli(k, g, d->Og * d->GKK)); }
static V grp_col(cg_k *k, const cv_t *d, V g, int64_t ld) { return cg_fptr(k, cv_col(k, d), cg_muli(k, g, d->GKK * ld)); }
static V grp_tmp(cg_k *k, const cv_t *d, V g, int64_t ld) { return cg_fptr(k, cv_tmp(k, d), cg_muli(k, g, d->Og * ld)); }

static void fwd_group(cg_k *k, const cv_t *d, V g, int64_t n, int64_t ld) {
  cg_sgemm(k, 0, 0, d->Og, n, d->GKK, 1.0, grp_w(k, d, k->arg[2], g), d->GKK, grp_col(k, d, g, ld), ld, 0.0,
           grp_tmp(k, d, g, ld), ld);
}

static void dx_group(cg_k *k, const cv_t *d, V g, int64_t n, int64_t ld) {
  (void)n; /* = ld: only the forward pads */
  cg_sgemm(k, 1, 0, d->GKK, ld, d->Og, 1.0, grp_w(k, d, k->arg[2], g), d->GKK, grp_tmp(k, d, g, ld), ld, 0.0,
           grp_col(k, d, g, ld), ld);
}

/* the batch in chunks of nb images (a loop), then the rest */
static void cv_chunks(cg_k *k, const cv_t *d, cv_chunk_fn f) {
  int64_t full = d->N / d->nb, rest = d->N % d->nb;
  if (full == 1) f(k, d, ci(k, 0), d->nb);
  else if (full > 1) CG_FOR(k, c, ci(k, 0), ci(k, full)) f(k, d, cg_muli(k, c.iv, d->nb), d->nb);
  if (rest) f(k, d, ci(k, full * d->nb), rest);
}

static void fwd_chunk(cg_k *k, const cv_t *d, V n0, int64_t m) {
  int64_t ld = cv_ld(d, m);
  V prod = cv_tmp(k, d);
  emit_im2col(k, d, 1, n0, m);
  cv_groups(k, d, m * d->P, ld, fwd_group);
  int bias = k->n->nin == 3;
  CG_FOR(k, i, ci(k, 0), ci(k, m)) CG_FOR(k, o, ci(k, 0), ci(k, d->O)) {
    row_t r = {bias ? RO_BIAS : RO_COPY, k->arg[0], cg_muli(k, cg_add(k, cg_muli(k, cg_add(k, n0, i.iv), d->O), o.iv), d->P),
               prod, cg_add(k, cg_muli(k, o.iv, ld), cg_muli(k, i.iv, d->P)), bias ? cg_ldp(k, k->arg[3], o.iv) : NULL,
               k->fuse != NULL};
    row_op(k, &r, d->P, 1, 1);
  }
}

/* dW[O, CKK] += dyc[O, ld] col[CKK, ld]^T as a cblas call whatever its
 * size: O x CKK is small, and OpenBLAS keeps several accumulator tiles busy
 * where a generated loop would wait on one chain per row */
static void dw_product(cg_k *k, const cv_t *d, V g, int64_t n, int64_t ld) {
  (void)n; /* = ld: only the forward pads */
  V dyc = grp_tmp(k, d, g, ld), col = grp_col(k, d, g, ld), dw = grp_w(k, d, k->arg[0], g);
  if (k->m->gemm_gen) {
    cg_gemm_generated(k, 0, 1, d->Og, d->GKK, ld, 1.0, dyc, ld, col, ld, 1.0, dw, d->GKK);
    return;
  }
  V a[14] = {ci32(k, 101), ci32(k, 111), ci32(k, 112), ci32(k, d->Og), ci32(k, d->GKK), ci32(k, ld), cf(k, 1.0),
             dyc, ci32(k, ld), col, ci32(k, ld), cf(k, 1.0), dw, ci32(k, d->GKK)};
  cg_call(k, k->m->sgemm, a, 14);
}

static void dw_chunk(cg_k *k, const cv_t *d, V n0, int64_t m) {
  emit_dy_cols(k, d, 2, n0, m);
  emit_im2col(k, d, 1, n0, m);
  cv_groups(k, d, m * d->P, m * d->P, dw_product);
}

static void dx_chunk(cg_k *k, const cv_t *d, V n0, int64_t m) {
  int64_t ld = m * d->P;
  V col = cv_col(k, d), x0 = cg_muli(k, n0, d->C * d->H * d->W);
  emit_dy_cols(k, d, 1, n0, m);
  cv_groups(k, d, ld, ld, dx_group);
  win_t t = {d, cg_fptr(k, k->arg[0], x0), col, d->H, d->W, m, 1};
  if (d->padded) t.img = cv_scr(k, 0), t.Hs = d->Hq, t.Ws = d->Wq;
  zero_floats(k, t.img, m * d->C * t.Hs * t.Ws);
  emit_windows(k, &t);
  if (d->padded) copy_planes(k, d, m, k->arg[0], x0, d->H, d->W, 0, 0, t.img, ci(k, 0), d->Hq, d->Wq, d->padT, d->padL);
}

/* one chunk's scratch, in floats */
static int64_t cv_chunk_floats(const cv_t *d) { return cv_pad_floats(d) + (d->CKK + d->O) * cv_ld(d, d->nb); }

int64_t cg_conv_scratch_bytes(const ir_graph *g, const ir_node *n) {
  if (cg_dconv_applies(g, n)) return cg_dconv_scratch_bytes(g, n);
  cv_t d = cv_of(g, n);
  return 4 * cv_chunk_floats(&d) * (d.par > 1 ? d.par : 1);
}

/* parallel chunk i: its images and its own slice of the scratch */
static void fwd_par_chunk(cg_k *k, V i, void *ctx) {
  const cv_t *d = ctx;
  V s0 = k->scratch;
  k->scratch = cg_fptr(k, s0, cg_muli(k, i, cv_chunk_floats(d)));
  fwd_chunk(k, d, cg_muli(k, i, d->nb), d->nb);
  k->scratch = s0;
}

void cg_emit_conv_fwd(cg_k *k) {
  if (cg_dconv_applies(k->g, k->n)) {
    cg_emit_dconv(k);
    return;
  }
  cv_t d = cv_of(k->g, k->n);
  if (d.par < 2) {
    cv_chunks(k, &d, fwd_chunk);
    return;
  }
  cg_parallel_for(k, d.par, 1, fwd_par_chunk, &d);
  if (d.N % d.nb) fwd_chunk(k, &d, ci(k, d.par * d.nb), d.N % d.nb);
}

/* CONV2D_GRAD_INPUT / _WEIGHT: 1, or 0 (emitting nothing) when an operand
 * is not f32: the caller's generated loops handle those. */
int cg_emit_conv_grad(cg_k *k) {
  for (int a = 0; a < 3; a++)
    if (k->dt[a] != IR_F32) return 0;
  cv_t d = cv_of(k->g, k->n);
  if (k->n->op == IR_CONV2D_GRAD_INPUT) {
    cv_chunks(k, &d, dx_chunk);
    return 1;
  }
  zero_floats(k, k->arg[0], d.O * d.GKK);
  cv_chunks(k, &d, dw_chunk);
  return 1;
}
