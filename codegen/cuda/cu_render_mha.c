/* cu_render_mha.c -- mha (attention with a mask, a context, rotary
 * embeddings or grouped key/value heads; ir/interp_mha.c) and its fused
 * backward mha_grad, flash-style as the plain attention (cu_render_attn.c):
 *   q = x wq + bq, kv = c wkv + bkv (products), rotated in place (rope);
 *   a warp per (batch, head, query row) with an online softmax over the keys
 *   it may see (causal, lengths, a key or a full boolean mask), writing the
 *   context and the row's logsumexp (-inf for a row that sees no key: a zero
 *   context and no gradient); y = ctx wp + bp.
 * The backward recomputes that forward into scratch, then a query pass (a
 * warp per query row: dq) and a key pass (a warp per key row of a key/value
 * head, summing over the query heads that read it: dk, dv), so no T x T
 * matrix and no atomics; the rotation undone on dq and dk; products and
 * column sums for the weights. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cu_render.h"

typedef struct {
  int64_t B, Tq, Tk, d, dc, H, K, hd, dk, NE, e; /* e: the inner width, wq's columns (d or heads x head_dim) */
  int causal, rope, mask; /* mask: the operand's rank (0: none) */
  int mask_node;
  char scale[48];
} mha_dims;

static int dims_of(cu_rctx *r, const ir_node *n, mha_dims *m) {
  const ir_graph *g = r->g;
  const ir_shape *sx = &g->nodes[n->in[0]].shape, *sc = &g->nodes[n->in[3]].shape;
  memset(m, 0, sizeof *m);
  m->B = sx->d[0], m->Tq = sx->d[1], m->Tk = sc->d[1], m->d = sx->d[2], m->dc = sc->d[2];
  m->H = n->attr.heads, m->K = n->attr.k, m->e = g->nodes[n->in[1]].shape.d[1];
  if (m->H < 1 || m->K < 1 || m->e % m->H || m->H % m->K) return cu_unsupported(r, "heads that do not divide");
  m->hd = m->e / m->H, m->dk = m->K * m->hd, m->NE = (m->hd + 31) / 32;
  if (m->NE > 8) return cu_unsupported(r, "a head width above 256");
  m->causal = n->attr.causal != 0, m->rope = n->attr.i != 0;
  int nin = n->nin - (n->op == IR_MHA_GRAD);
  m->mask_node = nin == 9 ? n->in[8] : -1;
  m->mask = m->mask_node >= 0 ? g->nodes[m->mask_node].shape.rank : 0;
  for (int j = 0; j < 8; j++)
    if (g->nodes[n->in[j]].dtype != IR_F32) return cu_unsupported(r, "16-bit floats are not rendered");
  cu_flt(1.0 / sqrt((double)m->hd), m->scale, sizeof m->scale);
  return 0;
}

/* Scratch, in parts at 256-byte boundaries: q [B Tq, e], ctx, kv [B Tk,
 * 2 dk], lse [B H Tq]; the backward also D_i [B H Tq], dctx, dq, dkv. In
 * --precision bf16 (lo) the products read bf16 and sum in f32: q and kv
 * stay f32 (the flash kernels' operands, rotated in place) while ctx, dctx
 * (and dq, dkv without rope) are bf16, each element rounded once; with rope
 * dq and dkv are unrotated in f32 and rounded into dq16, dkv16; then the
 * weights and any f32 x, c or dy rounded for the products (as autocast). */
enum { MQ, MCTX, MKV, MLSE, MDL, MDCTX, MDQ, MDKV, MDQ16, MDKV16, MWQ, MWKV, MWP, MBP, MX, MC, MDY, M_N };

static int64_t al256(int64_t b) { return (b + 255) / 256 * 256; }

/* off[i]: part i's byte offset from the scratch's start; returns the total */
static int64_t layout(const ir_graph *g, const ir_node *n, int lo, int64_t off[M_N]) {
  const ir_shape *sx = &g->nodes[n->in[0]].shape, *sc = &g->nodes[n->in[3]].shape;
  int64_t BQ = sx->d[0] * sx->d[1], BK = sc->d[0] * sc->d[1], d = sx->d[2], dc = sc->d[2];
  int64_t e = g->nodes[n->in[1]].shape.d[1], dk2 = g->nodes[n->in[5]].shape.d[0];
  int64_t rows = BQ * (n->attr.heads > 0 ? n->attr.heads : 1);
  int grad = n->op == IR_MHA_GRAD, rope = n->attr.i != 0, w = lo ? 2 : 4, wq = lo && !rope ? 2 : 4;
  const int64_t bytes[M_N] = {
    4 * BQ * e, w * BQ * e, 4 * BK * dk2, 4 * rows,
    grad * 4 * rows, grad * w * BQ * e, grad * wq * BQ * e, grad * wq * BK * dk2,
    grad * (lo && rope) * 2 * BQ * e, grad * (lo && rope) * 2 * BK * dk2,
    lo * 2 * d * e, lo * 2 * dc * dk2, lo * 2 * e * d, lo * 2 * d, lo * 2 * BQ * d, lo * 2 * BK * dc,
    grad * lo * 2 * BQ * d};
  int64_t at = 0;
  for (int i = 0; i < M_N; i++) off[i] = at, at += al256(bytes[i]);
  return at;
}

int64_t cu_mha_scratch(const ir_graph *g, const ir_node *n) {
  int64_t off[M_N];
  return layout(g, n, 0, off);
}

/* the bf16 plan's: room for either form (a kernel none of whose activations
 * turned out bf16 renders the f32 one, whose f32 parts may be the larger) */
int64_t cu_mha_scratch_bf16(const ir_graph *g, const ir_node *n) {
  int64_t off[M_N], lo = layout(g, n, 1, off), f32 = layout(g, n, 0, off);
  return lo > f32 ? lo : f32;
}

typedef struct {
  cu_ref q, kv, ctx, lse, dl, dctx, dq, dkv, dq16, dkv16;
  /* the products' operands: the tensors, or in lo their bf16 forms */
  cu_ref x, wq, c, wkv, wp, bp, dy;
  int bq, bkv; /* the biases' nodes */
  int lo;
  const char *ct, *gt; /* the element type of ctx and dctx; of dq and dkv as the passes write them */
} mha_bufs;

/* Whether mha node n runs its bf16 form: a tensor it reads or writes is
 * bf16 (an activation, or a weight that is a bf16 slice of a fused
 * parameter: the f32 form would read its bytes as floats). */
static int mha_lo(cu_rctx *r, const ir_node *n) {
  if (!r->bf16) return 0;
  int last = n->op == IR_MHA_GRAD ? n->in[n->nin - 1] : r->k->node;
  if (cu_is_bf16(r, &r->g->nodes[last])) return 1;
  for (int j = 0; j < 8; j++)
    if (cu_is_bf16(r, &r->g->nodes[n->in[j]])) return 1;
  return 0;
}

static int bufs_of(cu_rctx *r, const ir_node *n, const mha_dims *m, int64_t scr, mha_bufs *b) {
  int64_t off[M_N];
  memset(b, 0, sizeof *b);
  b->lo = mha_lo(r, n);
  layout(r->g, n, b->lo, off);
  cu_ref *part[M_N] = {&b->q, &b->ctx, &b->kv, &b->lse, &b->dl, &b->dctx, &b->dq, &b->dkv, &b->dq16, &b->dkv16};
  for (int i = 0; i <= MDKV16; i++) *part[i] = cu_ref_at(CU_REF_ARENA, scr + off[i]);
  b->ct = b->lo ? "lt_bf16" : "float", b->gt = b->lo && !m->rope ? "lt_bf16" : "float";
  b->x = cu_ref_at(n->in[0], 0), b->wq = cu_ref_at(n->in[1], 0), b->c = cu_ref_at(n->in[3], 0);
  b->wkv = cu_ref_at(n->in[4], 0), b->wp = cu_ref_at(n->in[6], 0), b->bp = cu_ref_at(n->in[7], 0);
  b->bq = n->in[2], b->bkv = n->in[5];
  int grad = n->op == IR_MHA_GRAD, dy = grad ? n->in[n->nin - 1] : -1;
  if (grad) b->dy = cu_ref_at(dy, 0);
  if (!b->lo || !m->rope) b->dq16 = b->dq, b->dkv16 = b->dkv; /* the products read what the passes (or rope) wrote */
  if (!b->lo) return 0;
  int64_t BQ = m->B * m->Tq, BK = m->B * m->Tk, dk2 = 2 * m->dk;
  if (cu_as_bf16(r, n->in[0], b->x, BQ * m->d, scr + off[MX], &b->x) ||
      cu_as_bf16(r, n->in[1], b->wq, m->d * m->e, scr + off[MWQ], &b->wq) ||
      (n->in[3] != n->in[0] && cu_as_bf16(r, n->in[3], b->c, BK * m->dc, scr + off[MC], &b->c)) ||
      cu_as_bf16(r, n->in[4], b->wkv, m->dc * dk2, scr + off[MWKV], &b->wkv) ||
      cu_as_bf16(r, n->in[6], b->wp, m->e * m->d, scr + off[MWP], &b->wp) ||
      (grad && cu_as_bf16(r, dy, b->dy, BQ * m->d, scr + off[MDY], &b->dy)))
    return -1;
  if (n->in[3] == n->in[0]) b->c = b->x; /* self-attention: one rounded x */
  /* a bf16 y takes its bias in its own type (cuBLASLt's bias has D's); the
   * biases are f32 in the plan (cu_precision.c), bq and bkv as f32 q and kv */
  if (!grad && cu_is_bf16(r, &r->g->nodes[r->k->node]) && cu_to_bf16(r, n->in[7], scr + off[MBP], &b->bp)) return -1;
  return 0;
}

/* Rotate (sign +1) or unrotate (-1) rows of src into dst (the same f32
 * buffer, or under --precision bf16 the backward's dq, dkv rounded once
 * into bf16, dt "lt_bf16"): `rows` rows of ld elements, position = row % T,
 * nh heads of hd from column 0. A thread per pair: it reads both elements
 * before it writes them, so src may be dst. Into another buffer, a row's
 * columns past the heads (kv's values, ld = 2 nh hd) are copied by the
 * same thread, as otherwise nothing would write them there. */
static int rope_kernel(cu_rctx *r, const mha_dims *m, cu_ref src, cu_ref dst, const char *dt, int64_t rows, int64_t T,
                       int64_t ld, int64_t nh, int sign) {
  int64_t half = m->hd / 2, count = rows * nh * half, rest = ld - nh * m->hd;
  int copy = src.node != dst.node || src.off != dst.off;
  if (copy && rest && rest != nh * m->hd) return cu_unsupported(r, "rope rows of an unexpected width");
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const float* s, %s* v) {\n", dt);
  cu_grid_loop(&r->b, count);
  cu_sb_printf(&r->b, "    long long p = e %% %lldLL, h = e / %lldLL %% %lldLL, row = e / (%lldLL * %lldLL);\n"
                      "    double th = (double)(row %% %lldLL) * pow(10000.0, -2.0 * (double)p / %lld.0);\n"
                      "    float cs = (float)cos(th), sn = (float)(%d.0 * sin(th));\n"
                      "    long long o = row * %lldLL + h * %lldLL + p;\n"
                      "    float a = s[o], b = s[o + %lld];\n    v[o] = a * cs - b * sn; v[o + %lld] = b * cs + a * sn;\n",
               (long long)half, (long long)half, (long long)nh, (long long)half, (long long)nh, (long long)T,
               (long long)m->hd, sign, (long long)ld, (long long)m->hd, (long long)half, (long long)half);
  if (copy && rest) /* the values beside this pair */
    cu_sb_printf(&r->b, "    v[o + %lldLL] = s[o + %lldLL]; v[o + %lldLL] = s[o + %lldLL];\n", (long long)rest,
                 (long long)rest, (long long)(rest + half), (long long)(rest + half));
  cu_sb_printf(&r->b, "  }\n}\n");
  cu_ref ops[2] = {src, dst};
  return cu_end(r, cu_blocks(count, 256), 256, ops, 2);
}

/* `int ok = ...` : may query row i of batch b see key j */
static void allowed(cu_sb *b, const mha_dims *m) {
  cu_sb_printf(b, "int ok = %s", m->causal ? "j <= i" : "1");
  if (m->mask == 1) cu_sb_printf(b, " && j < (long long)mask[b]");
  else if (m->mask == 2) cu_sb_printf(b, " && mask[b * TK + j] != 0");
  else if (m->mask == 3) cu_sb_printf(b, " && mask[(b * TQ + i) * TK + j] != 0");
  cu_sb_printf(b, ";");
}

static const char *mask_type(const mha_dims *m) { return m->mask == 1 ? "int" : "unsigned char"; }

/* The warp loop over (batch, head, query row) w = (b H + h) TQ + i; D the
 * stride of q, ctx, dctx and dq rows (the inner width); qr the query row, kvh the key/value head, kvb the batch's first kv row. */
static void open_rows(cu_rctx *r, const mha_dims *m, int64_t rows) {
  cu_sb_printf(&r->b, "  const long long TQ = %lldLL, TK = %lldLL, D = %lldLL, H = %lldLL, HD = %lldLL, DK = %lldLL;\n"
                      "  const float SCALE = %s;\n  (void)TK; (void)DK;\n",
               (long long)m->Tq, (long long)m->Tk, (long long)m->e, (long long)m->H, (long long)m->hd,
               (long long)m->dk, m->scale);
  cu_warp_loop(&r->b, rows);
}
#define FOR_T "for (int t = 0; t < NE; t++) { long long e = lane + 32 * t; if (e < HD) { "

static int fwd_kernel(cu_rctx *r, const mha_dims *m, const mha_bufs *bf) {
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const float* __restrict__ q, const float* __restrict__ kv, const %s* __restrict__ mask,"
                      " %s* __restrict__ ctx, float* __restrict__ lse) {\n  const int NE = %lld;\n",
               mask_type(m), bf->ct, (long long)m->NE);
  open_rows(r, m, m->B * m->H * m->Tq);
  cu_sb_printf(&r->b, "    long long i = w %% TQ, h = w / TQ %% H, b = w / (TQ * H), kvh = h / (H / %lldLL);\n"
                      "    const float* qr = q + (b * TQ + i) * D + h * HD;\n"
                      "    const float* kvb = kv + b * TK * 2 * DK + kvh * HD;\n"
                      "    float qv[%lld], acc[%lld], mx = -LT_INF, l = 0.f;\n"
                      "    for (int t = 0; t < NE; t++) { long long e = lane + 32 * t; qv[t] = e < HD ? qr[e] : 0.f; acc[t] = 0.f; }\n"
                      "    for (long long j = 0; j < TK; j++) {\n      ",
               (long long)m->K, (long long)m->NE, (long long)m->NE);
  allowed(&r->b, m);
  cu_sb_printf(&r->b, "\n      if (!ok) continue;\n"
                      "      const float* kr = kvb + j * 2 * DK; const float* vr = kr + DK;\n"
                      "      float s = 0.f;\n      " FOR_T "s += qv[t] * kr[e]; } }\n"
                      "      s = lt_warp_sum(s) * SCALE;\n"
                      "      float mn = fmaxf(mx, s), c = expf(mx - mn), p = expf(s - mn);\n      l = l * c + p;\n"
                      "      " FOR_T "acc[t] = acc[t] * c + p * vr[e]; } }\n      mx = mn;\n    }\n"
                      "    " FOR_T "ctx[(b * TQ + i) * D + h * HD + e] = l > 0.f ? acc[t] / l : 0.f; } }\n"
                      "    if (lane == 0) lse[w] = l > 0.f ? mx + logf(l) : -LT_INF;\n  }\n}\n");
  cu_ref mk = m->mask_node >= 0 ? cu_ref_at(m->mask_node, 0) : bf->q; /* no mask: a pointer never read */
  cu_ref ops[5] = {bf->q, bf->kv, mk, bf->ctx, bf->lse};
  return cu_end(r, cu_blocks(m->B * m->H * m->Tq * 32, 256), 256, ops, 5);
}

/* q, kv (rotated), ctx and lse of mha node n into scratch: q and kv f32
 * (in lo from bf16 x bf16 products with f32 sums), ctx of type bf->ct */
static int forward(cu_rctx *r, const mha_dims *m, const mha_bufs *bf) {
  int64_t BQ = m->B * m->Tq, BK = m->B * m->Tk;
  if (cu_gemm_t(r, BQ, m->d, m->e, 0, 0, bf->x, bf->wq, bf->q, cu_ref_at(bf->bq, 0))) return -1;
  if (bf->lo) cu_gemm_bf16(r, 0);
  if (cu_gemm_t(r, BK, m->dc, 2 * m->dk, 0, 0, bf->c, bf->wkv, bf->kv, cu_ref_at(bf->bkv, 0))) return -1;
  if (bf->lo) cu_gemm_bf16(r, 0);
  if (m->rope && (rope_kernel(r, m, bf->q, bf->q, "float", BQ, m->Tq, m->e, m->H, 1) ||
                  rope_kernel(r, m, bf->kv, bf->kv, "float", BK, m->Tk, 2 * m->dk, m->K, 1)))
    return -1;
  return fwd_kernel(r, m, bf);
}

static int r_mha(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  mha_dims m;
  mha_bufs bf;
  if (dims_of(r, n, &m)) return -1;
  int64_t scr = r->p->buf[r->k->node].scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for q, kv and the context");
  if (bufs_of(r, n, &m, scr, &bf) || forward(r, &m, &bf)) return -1;
  if (cu_gemm_t(r, m.B * m.Tq, m.e, m.d, 0, 0, bf.ctx, bf.wp, cu_ref_at(r->k->node, 0), bf.bp)) return -1;
  if (bf.lo) cu_gemm_bf16(r, cu_is_bf16(r, &r->g->nodes[r->k->node]));
  return 0;
}

static const char grad_params[] =
    "const float* __restrict__ q, const float* __restrict__ kv, const %s* __restrict__ mask,"
    " const %s* __restrict__ ctx, const float* __restrict__ lse, const %s* __restrict__ dctx,"
    " float* __restrict__ dl, %s* __restrict__ dq, %s* __restrict__ dkv) {\n  const int NE = %lld;\n";

static int r_mha_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  mha_dims m;
  mha_bufs bf;
  if (dims_of(r, n, &m)) return -1;
  int64_t scr = r->p->buf[r->k->node].scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for the mha gradient");
  if (bufs_of(r, n, &m, scr, &bf) || forward(r, &m, &bf)) return -1;
  int64_t BQ = m.B * m.Tq, BK = m.B * m.Tk, d = m.d, e = m.e, dk2 = 2 * m.dk, NE = m.NE;
  int out = r->k->node;
  /* [dx | dwq | dbq | dc | dwkv | dbkv | dwp | dbp] */
  int64_t o_dwq = 4 * BQ * d, o_dbq = o_dwq + 4 * d * e, o_dc = o_dbq + 4 * e, o_dwkv = o_dc + 4 * BK * m.dc;
  int64_t o_dbkv = o_dwkv + 4 * m.dc * dk2, o_dwp = o_dbkv + 4 * dk2, o_dbp = o_dwp + 4 * e * d;
  cu_ref none = cu_ref_at(CU_REF_NONE, 0);
  /* dwp = ctx^T dy with dbp; dctx = dy wp^T (in lo bf16 x bf16, dctx rounded once) */
  if ((bf.lo ? cu_gemm_bgrad_bf16 : cu_gemm_bgrad)(r, e, BQ, d, bf.ctx, bf.dy, cu_ref_at(out, o_dwp),
                                                    cu_ref_at(out, o_dbp)) ||
      cu_gemm_t(r, BQ, d, e, 0, 1, bf.dy, bf.wp, bf.dctx, none))
    return -1;
  if (bf.lo) cu_gemm_bf16(r, 1);
  cu_ref mk = m.mask_node >= 0 ? cu_ref_at(m.mask_node, 0) : bf.q;
  cu_ref ops[9] = {bf.q, bf.kv, mk, bf.ctx, bf.lse, bf.dctx, bf.dl, bf.dq, bf.dkv};
  /* the query pass: D_i, then dq_i */
  cu_begin(r, 256);
  cu_sb_printf(&r->b, grad_params, mask_type(&m), bf.ct, bf.ct, bf.gt, bf.gt, (long long)NE);
  open_rows(r, &m, m.B * m.H * m.Tq);
  cu_sb_printf(&r->b, "    long long i = w %% TQ, h = w / TQ %% H, b = w / (TQ * H), kvh = h / (H / %lldLL);\n"
                      "    const long long ro = (b * TQ + i) * D + h * HD;\n"
                      "    const float* kvb = kv + b * TK * 2 * DK + kvh * HD;\n"
                      "    float qv[%lld], g[%lld], dqv[%lld], di = 0.f;\n"
                      "    for (int t = 0; t < NE; t++) { long long e = lane + 32 * t;\n"
                      "      qv[t] = e < HD ? q[ro + e] : 0.f; g[t] = e < HD ? dctx[ro + e] : 0.f;\n"
                      "      di += e < HD ? g[t] * ctx[ro + e] : 0.f; dqv[t] = 0.f; }\n"
                      "    di = lt_warp_sum(di);\n    if (lane == 0) dl[w] = di;\n    const float L = lse[w];\n"
                      "    for (long long j = 0; j < TK && L > -LT_INF; j++) {\n      ",
               (long long)m.K, (long long)NE, (long long)NE, (long long)NE);
  allowed(&r->b, &m);
  cu_sb_printf(&r->b, "\n      if (!ok) continue;\n"
                      "      const float* kr = kvb + j * 2 * DK; const float* vr = kr + DK;\n"
                      "      float s = 0.f, dp = 0.f;\n      " FOR_T "s += qv[t] * kr[e]; dp += g[t] * vr[e]; } }\n"
                      "      s = lt_warp_sum(s) * SCALE; dp = lt_warp_sum(dp);\n"
                      "      float ds = expf(s - L) * (dp - di) * SCALE;\n"
                      "      " FOR_T "dqv[t] += ds * kr[e]; } }\n    }\n"
                      "    " FOR_T "dq[ro + e] = dqv[t]; } }\n  }\n}\n");
  if (cu_end(r, cu_blocks(m.B * m.H * m.Tq * 32, 256), 256, ops, 9)) return -1;
  /* the key pass: a warp per (batch, kv head, key row j), over its query heads and rows */
  cu_begin(r, 256);
  cu_sb_printf(&r->b, grad_params, mask_type(&m), bf.ct, bf.ct, bf.gt, bf.gt, (long long)NE);
  open_rows(r, &m, m.B * m.K * m.Tk);
  cu_sb_printf(&r->b, "    const long long KH = %lldLL, G = H / KH;\n"
                      "    long long j = w %% TK, kvh = w / TK %% KH, b = w / (TK * KH);\n"
                      "    auto* dkr = dkv + (b * TK + j) * 2 * DK + kvh * HD;\n"
                      "    const float* kr = kv + (b * TK + j) * 2 * DK + kvh * HD; const float* vr = kr + DK;\n"
                      "    float kk[%lld], vv[%lld], dk[%lld], dv[%lld];\n"
                      "    for (int t = 0; t < NE; t++) { long long e = lane + 32 * t;\n"
                      "      kk[t] = e < HD ? kr[e] : 0.f; vv[t] = e < HD ? vr[e] : 0.f; dk[t] = 0.f; dv[t] = 0.f; }\n"
                      "    for (long long h = kvh * G; h < kvh * G + G; h++)\n"
                      "    for (long long i = 0; i < TQ; i++) {\n      ",
               (long long)m.K, (long long)NE, (long long)NE, (long long)NE, (long long)NE);
  allowed(&r->b, &m);
  cu_sb_printf(&r->b, "\n      if (!ok) continue;\n"
                      "      const long long qw = (b * H + h) * TQ + i, ro = (b * TQ + i) * D + h * HD;\n"
                      "      const float* qr = q + ro; const auto* gr = dctx + ro;\n"
                      "      float s = 0.f, dp = 0.f;\n      " FOR_T "s += qr[e] * kk[t]; dp += gr[e] * vv[t]; } }\n"
                      "      s = lt_warp_sum(s) * SCALE; dp = lt_warp_sum(dp);\n"
                      "      float p = expf(s - lse[qw]), ds = p * (dp - dl[qw]) * SCALE;\n"
                      "      " FOR_T "dk[t] += ds * qr[e]; dv[t] += p * gr[e]; } }\n    }\n"
                      "    " FOR_T "dkr[e] = dk[t]; dkr[DK + e] = dv[t]; } }\n  }\n}\n");
  if (cu_end(r, cu_blocks(m.B * m.K * m.Tk * 32, 256), 256, ops, 9)) return -1;
  if (m.rope && (rope_kernel(r, &m, bf.dq, bf.dq16, bf.ct, BQ, m.Tq, e, m.H, -1) ||
                 rope_kernel(r, &m, bf.dkv, bf.dkv16, bf.ct, BK, m.Tk, dk2, m.K, -1)))
    return -1;
  /* q = x wq + bq; kv = c wkv + bkv: dwq with dbq, dx, dwkv with dbkv, dc (in lo bf16 x bf16 into the f32 result) */
  int (*bgrad)(cu_rctx *, int64_t, int64_t, int64_t, cu_ref, cu_ref, cu_ref, cu_ref) =
      bf.lo ? cu_gemm_bgrad_bf16 : cu_gemm_bgrad;
  if (bgrad(r, d, BQ, e, bf.x, bf.dq16, cu_ref_at(out, o_dwq), cu_ref_at(out, o_dbq)) ||
      cu_gemm_t(r, BQ, e, d, 0, 1, bf.dq16, bf.wq, cu_ref_at(out, 0), none))
    return -1;
  if (bf.lo) cu_gemm_bf16(r, 0);
  if (bgrad(r, m.dc, BK, dk2, bf.c, bf.dkv16, cu_ref_at(out, o_dwkv), cu_ref_at(out, o_dbkv)) ||
      cu_gemm_t(r, BK, dk2, m.dc, 0, 1, bf.dkv16, bf.wkv, cu_ref_at(out, o_dc), none))
    return -1;
  if (bf.lo) cu_gemm_bf16(r, 0);
  return 0;
}

cu_render_fn cu_mha_renderer(int op) { return op == IR_MHA ? r_mha : op == IR_MHA_GRAD ? r_mha_grad : NULL; }
