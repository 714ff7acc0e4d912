/* cu_render_attn.c -- attention (attention, attention_save) as two
 * products and one fused kernel: qkv = x W_qkv + b (cuBLASLt, bias
 * epilogue), each (batch, head, query row) attended by one warp with an
 * online softmax over the keys (flash-style: the running maximum and sum
 * rescale the accumulated context, so no T x T matrix exists anywhere;
 * causal rows stop at their own position), then y = ctx W_p + b_p.
 * attention keeps qkv and the context in the kernel's scratch;
 * attention_save writes them (and each row's logsumexp) into its result
 * [y | qkv | ctx | lse], which its backward reads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu_render.h"

int cu_gemm_t(cu_rctx *r, int64_t m, int64_t k, int64_t n, int ta, int tb, cu_ref a, cu_ref b, cu_ref c,
                  cu_ref bias) {
  if (m > 2147483647 || k > 2147483647 || n > 2147483647) return cu_unsupported(r, "a product too large for int");
  cu_launch l;
  memset(&l, 0, sizeof l);
  l.what = CU_L_GEMM;
  l.gemm.m = (int)m, l.gemm.k = (int)k, l.gemm.n = (int)n;
  l.gemm.trans_a = ta, l.gemm.trans_b = tb;
  l.gemm.lda = (int)(ta ? m : k), l.gemm.ldb = (int)(tb ? k : n), l.gemm.ldc = (int)n;
  l.gemm.alpha = 1.f, l.gemm.beta = 0.f, l.gemm.batch = 1;
  l.gemm.epilogue = bias.node == CU_REF_NONE ? CU_EPI_NONE : CU_EPI_BIAS;
  l.ga = a, l.gb = b, l.gc = c, l.gbias = bias;
  return cu_add_launch(r, &l);
}

/* c = a^T b ([m, k]^T [k, n]) and the bias gradient db = b's column sums
 * over its k rows: one product with cuBLASLt's bias-gradient epilogue
 * (CU_EPI_BGRAD_B), the backward's weight and bias gradients of a layer
 * together. LATHE_CUDA_BGRAD=0 (read at render time, so the cache key
 * follows it) keeps the sum as its own kernel, should a cuBLASLt refuse
 * the epilogue for some shape. */
int cu_gemm_bgrad(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref db) {
  const char *env = getenv("LATHE_CUDA_BGRAD");
  if (env && !strcmp(env, "0"))
    return cu_gemm_t(r, m, k, n, 1, 0, a, b, c, cu_ref_at(CU_REF_NONE, 0)) || cu_colsum(r, k, n, b, db) ? -1 : 0;
  if (cu_gemm_t(r, m, k, n, 1, 0, a, b, c, cu_ref_at(CU_REF_NONE, 0))) return -1;
  cu_launch *l = &r->out->l[r->out->nl - 1]; /* the product just added */
  l->gemm.epilogue = CU_EPI_BGRAD_B;
  l->gbias = db;
  return 0;
}

static int gemm_raw(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref bias) {
  return cu_gemm_t(r, m, k, n, 0, 0, a, b, c, bias);
}

cu_ref cu_ref_at(int node, int64_t off) {
  cu_ref x = {node, off};
  return x;
}

typedef struct {
  int64_t B, T, D, H, HD, BT, NE;
  int causal;
  char scale[48];
} attn_dims;

static int dims_of(cu_rctx *r, const ir_node *n, attn_dims *a) {
  const ir_node *x = &r->g->nodes[n->in[0]];
  a->B = x->shape.d[0], a->T = x->shape.d[1], a->D = x->shape.d[2], a->H = n->attr.heads;
  if (a->H < 1 || a->D % a->H)
    return cu_unsupported(r, "%lld heads do not divide width %lld", (long long)a->H, (long long)a->D);
  a->HD = a->D / a->H, a->BT = a->B * a->T, a->NE = (a->HD + 31) / 32;
  if (a->NE > 8) return cu_unsupported(r, "a head width above 256");
  a->causal = n->attr.causal != 0;
  cu_flt(1.0 / sqrt((double)a->HD), a->scale, sizeof a->scale);
  return 0;
}

/* The constants and the warp loop over (batch, head, row) every attention
 * kernel opens with: w the warp's row, i its position, h its head, b its
 * sequence; base the sequence's qkv rows. */
static void warp_rows_open(cu_rctx *r, const attn_dims *a, const char *qt) {
  cu_sb_printf(&r->b, "  const long long T = %lldLL, D = %lldLL, H = %lldLL, HD = %lldLL;\n"
                      "  const float SCALE = %s;\n  (void)HD;\n",
               (long long)a->T, (long long)a->D, (long long)a->H, (long long)a->HD, a->scale);
  cu_warp_loop(&r->b, a->B * a->H * a->T);
  cu_sb_printf(&r->b, "    long long i = w %% T, h = w / T %% H, b = w / (T * H);\n"
                      "    const %s* base = qkv + b * T * 3 * D;\n", qt);
}
/* for each of the lane's head elements t (e = lane + 32 t < HD) */
#define FOR_T(a, body) "for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) { " body " } }"

/* The online-softmax forward: ctx (and each row's logsumexp when lse) from
 * qkv; qt the element type of qkv and ctx (float, or lt_bf16 under
 * --precision bf16: loaded widened, the softmax and the sums in f32). */
static int fwd_kernel(cu_rctx *r, const attn_dims *a, cu_ref qkv, cu_ref ctx, cu_ref lse, int with_lse, const char *qt) {
  long long NE = (long long)a->NE;
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const %s* __restrict__ qkv, %s* __restrict__ ctx, float* __restrict__ lse) {\n", qt, qt);
  warp_rows_open(r, a, qt);
  cu_sb_printf(&r->b, "    float q[%lld], acc[%lld], m = -LT_INF, l = 0.f;\n"
                      "    for (int t = 0; t < %lld; t++) {\n      long long e = lane + 32 * t;\n"
                      "      q[t] = e < HD ? base[i * 3 * D + h * HD + e] : 0.f; acc[t] = 0.f;\n    }\n"
                      "    long long nj = %s;\n"
                      "    for (long long j = 0; j < nj; j++) {\n"
                      "      const %s* kr = base + j * 3 * D + D + h * HD;\n      const %s* vr = kr + D;\n"
                      "      float s = 0.f;\n      " FOR_T(a, "s += q[t] * kr[e];") "\n"
                      "      s = lt_warp_sum(s) * SCALE;\n"
                      "      float mn = fmaxf(m, s), c = expf(m - mn), p = expf(s - mn);\n      l = l * c + p;\n"
                      "      " FOR_T(a, "acc[t] = acc[t] * c + p * vr[e];") "\n"
                      "      m = mn;\n    }\n"
                      "    " FOR_T(a, "ctx[(b * T + i) * D + h * HD + e] = acc[t] / l;") "\n"
                      "    %s\n  }\n}\n",
               NE, NE, NE, a->causal ? "i + 1" : "T", qt, qt, NE, NE, NE,
               with_lse ? "if (lane == 0) lse[(b * H + h) * T + i] = m + logf(l);" : "(void)lse;");
  cu_ref ops[3] = {qkv, ctx, lse};
  return cu_end(r, cu_blocks(a->B * a->H * a->T * 32, 256), 256, ops, 3);
}

/* --precision bf16 (attention, not attention_save: its packed result and
 * the backward stay f32): qkv and the context in bf16 scratch, the flash
 * kernel loading bf16 and summing in f32, both products bf16 x bf16 with
 * f32 sums on cuBLASLt, the weights, the biases (and an f32 x) rounded
 * into scratch first. The scratch's parts, in order, each at a 256-byte
 * boundary: */
enum { AB_QKV, AB_CTX, AB_WQ, AB_BQ, AB_WP, AB_BP, AB_X, AB_N };

static int64_t al256(int64_t b) { return (b + 255) / 256 * 256; }

/* off[i]: part i's byte offset from the scratch's start; returns the total */
static int64_t bf16_layout(int64_t BT, int64_t D, int64_t off[AB_N]) {
  const int64_t elems[AB_N] = {BT * 3 * D, BT * D, D * 3 * D, 3 * D, D * D, D, BT * D};
  int64_t at = 0;
  for (int i = 0; i < AB_N; i++) off[i] = at, at += al256(2 * elems[i]);
  return at;
}

int64_t cu_attention_scratch_bf16(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  int64_t BT = x->d[0] * x->d[1], D = x->d[2], off[AB_N];
  int64_t b = bf16_layout(BT, D, off);
  return b > 16 * BT * D ? b : 16 * BT * D; /* or the f32 form's qkv and context, when x and y stay f32 */
}

/* The last product added now reads bf16 A and B (and a bias of C's type). */
void cu_gemm_bf16(cu_rctx *r, int c_bf16) {
  cu_gemm *g = &r->out->l[r->out->nl - 1].gemm;
  g->ab_type = CU_T_BF16, g->c_type = c_bf16 ? CU_T_BF16 : CU_T_F32, g->bias_type = g->c_type;
}

static int attention_bf16(cu_rctx *r, const ir_node *n, const attn_dims *a) {
  int64_t BT = a->BT, D = a->D, scr = r->p->buf[r->k->node].scr, off[AB_N];
  if (scr < 0) return cu_unsupported(r, "no scratch for qkv and the context");
  bf16_layout(BT, D, off);
  int ybf = cu_is_bf16(r, &r->g->nodes[r->k->node]);
  cu_ref qkv = cu_ref_at(CU_REF_ARENA, scr + off[AB_QKV]), ctx = cu_ref_at(CU_REF_ARENA, scr + off[AB_CTX]);
  cu_ref wq, bq, wp, bp = cu_ref_at(n->in[4], 0), x = cu_ref_at(n->in[0], 0), y = cu_ref_at(r->k->node, 0);
  if (cu_to_bf16(r, n->in[1], scr + off[AB_WQ], &wq) || cu_to_bf16(r, n->in[2], scr + off[AB_BQ], &bq) ||
      cu_to_bf16(r, n->in[3], scr + off[AB_WP], &wp) || (ybf && cu_to_bf16(r, n->in[4], scr + off[AB_BP], &bp)) ||
      (!cu_is_bf16(r, &r->g->nodes[n->in[0]]) && cu_to_bf16(r, n->in[0], scr + off[AB_X], &x)))
    return -1;
  if (gemm_raw(r, BT, D, 3 * D, x, wq, qkv, bq)) return -1;
  cu_gemm_bf16(r, 1);
  if (fwd_kernel(r, a, qkv, ctx, y, 0, "lt_bf16")) return -1; /* no logsumexp: y stands in, unused */
  if (gemm_raw(r, BT, D, D, ctx, wp, y, bp)) return -1;
  cu_gemm_bf16(r, ybf);
  return 0;
}

/* --precision bf16 in the training attention (attention_save and both
 * backwards; their packed results, and so y, qkv, ctx and the logsumexp a
 * backward reads, stay f32): the products whose operand is a bf16
 * activation (x, dy) run bf16 x bf16 with f32 sums, their f32 operands
 * (the weights, the saved context) rounded into the kernel's scratch
 * first; the backward's dctx and dqkv are bf16 in scratch, which the flash
 * kernels read and write directly (loaded widened, the softmax rows, the
 * logsumexp and every sum in f32, each gradient row rounded once). The
 * parts after the f32 form's scratch, in order, at 256-byte boundaries: */
enum { GB_WQ, GB_WP, GB_CTX, GB_X, GB_DY, GB_N };

static int64_t grad_bf16_layout(int64_t BT, int64_t D, int64_t base, int64_t off[GB_N]) {
  const int64_t elems[GB_N] = {D * 3 * D, D * D, BT * D, BT * D, BT * D};  /* W_qkv, W_p, ctx, x, dy */
  int64_t at = al256(base);
  for (int i = 0; i < GB_N; i++) off[i] = at, at += al256(2 * elems[i]);
  return at;
}

int64_t cu_attention_train_scratch_bf16(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  int64_t off[GB_N], D = x->d[2];
  if (n->op == IR_ATTENTION_SAVE) { /* the forward rounds W_qkv, W_p and its context (the parts before x) */
    grad_bf16_layout(x->d[0] * x->d[1], D, 0, off);
    return off[GB_X];
  }
  return grad_bf16_layout(x->d[0] * x->d[1], D, cu_attention_grad_scratch(g, n), off);
}

/* A product's operand as bf16: the tensor itself when it is bf16, else
 * rounded into scratch at at (count elements from ref). */
int cu_as_bf16(cu_rctx *r, int node, cu_ref ref, int64_t count, int64_t at, cu_ref *out) {
  if (node >= 0 && cu_is_bf16(r, &r->g->nodes[node])) { *out = ref; return 0; }
  return cu_round_bf16(r, ref, count, at, out);
}

/* Whether kernel r->k's attention runs its bf16 form: x or dy is bf16. */
static int train_bf16(cu_rctx *r, const ir_node *n) {
  if (!r->bf16) return 0;
  int dy = n->op == IR_ATTENTION_SAVE ? -1 : n->in[5];
  return cu_is_bf16(r, &r->g->nodes[n->in[0]]) || (dy >= 0 && cu_is_bf16(r, &r->g->nodes[dy]));
}

int cu_render_attention(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int save = n->op == IR_ATTENTION_SAVE;
  attn_dims a;
  if (dims_of(r, n, &a)) return -1;
  if (!save && r->bf16 && (cu_is_bf16(r, &r->g->nodes[n->in[0]]) || cu_is_bf16(r, &r->g->nodes[r->k->node])))
    return attention_bf16(r, n, &a);
  int lo = save && train_bf16(r, n);
  int64_t BT = a.BT, D = a.D;
  cu_ref y = cu_ref_at(r->k->node, 0), qkv, ctx, lse = cu_ref_at(r->k->node, 0);
  if (save) {
    qkv = cu_ref_at(r->k->node, BT * D * 4);
    ctx = cu_ref_at(r->k->node, BT * D * 4 + BT * 3 * D * 4);
    lse = cu_ref_at(r->k->node, BT * D * 4 + BT * 3 * D * 4 + BT * D * 4);
  } else {
    int64_t scr = r->p->buf[r->k->node].scr;
    if (scr < 0) return cu_unsupported(r, "no scratch for qkv and the context");
    qkv = cu_ref_at(CU_REF_ARENA, scr), ctx = cu_ref_at(CU_REF_ARENA, scr + BT * 3 * D * 4);
  }
  cu_ref x = cu_ref_at(n->in[0], 0), wq = cu_ref_at(n->in[1], 0), wp = cu_ref_at(n->in[3], 0), ctx16 = ctx;
  int64_t off[GB_N];
  if (lo) { /* bf16 x: the qkv product bf16 x bf16 into the f32 qkv */
    int64_t scr = r->p->buf[r->k->node].scr;
    if (scr < 0) return cu_unsupported(r, "no scratch for the bf16 weights");
    grad_bf16_layout(BT, D, scr, off);
    if (cu_as_bf16(r, n->in[1], wq, D * 3 * D, off[GB_WQ], &wq) || cu_as_bf16(r, n->in[3], wp, D * D, off[GB_WP], &wp))
      return -1;
  }
  if (gemm_raw(r, BT, D, 3 * D, x, wq, qkv, cu_ref_at(n->in[2], 0))) return -1;
  if (lo) cu_gemm_bf16(r, 0);
  if (fwd_kernel(r, &a, qkv, ctx, lse, save, "float")) return -1;
  /* the saved context stays f32 (docs/cuda.md: its backward's D_i); the output projection reads it rounded */
  if (lo && cu_as_bf16(r, -1, ctx, BT * D, off[GB_CTX], &ctx16)) return -1;
  if (gemm_raw(r, BT, D, D, ctx16, wp, y, cu_ref_at(n->in[4], 0))) return -1;
  if (lo) cu_gemm_bf16(r, 0);
  return 0;
}

static int colsum_of(cu_rctx *r, int64_t rows, int64_t cols, cu_ref x, cu_ref c, const char *xt) {
  unsigned t = cu_row_threads(rows);
  cu_begin(r, (int)t);
  cu_sb_printf(&r->b, "const %s* __restrict__ x, float* __restrict__ c) {\n", xt);
  cu_sb_printf(&r->b, ""
                      "  for (long long j = blockIdx.x; j < %lldLL; j += gridDim.x) {\n    float acc = 0.f;\n"
                      "    for (long long q = threadIdx.x; q < %lldLL; q += blockDim.x) acc += x[q * %lldLL + j];\n"
                      "    acc = lt_block_reduce(acc, 0);\n    if (threadIdx.x == 0) c[j] = acc;\n  }\n}\n",
               (long long)cols, (long long)rows, (long long)cols);
  cu_ref ops[2] = {x, c};
  return cu_end(r, cu_blocks(cols, 1), t, ops, 2);
}

int cu_colsum(cu_rctx *r, int64_t rows, int64_t cols, cu_ref x, cu_ref c) {
  return colsum_of(r, rows, cols, x, c, "float");
}

/* cu_gemm_bgrad on bf16 operands (train_bf16): a^T b in bf16 with f32
 * sums into the f32 c, the bias gradient (f32) from the bf16 b; with
 * LATHE_CUDA_BGRAD=0 a column-sum kernel reading b as bf16. */
int cu_gemm_bgrad_bf16(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref db) {
  const char *env = getenv("LATHE_CUDA_BGRAD");
  if (cu_gemm_t(r, m, k, n, 1, 0, a, b, c, cu_ref_at(CU_REF_NONE, 0))) return -1;
  cu_gemm_bf16(r, 0);
  if (env && !strcmp(env, "0")) return colsum_of(r, k, n, b, db, "lt_bf16");
  cu_launch *l = &r->out->l[r->out->nl - 1];
  l->gemm.epilogue = CU_EPI_BGRAD_B;
  l->gbias = db;
  return 0;
}

/* Scratch bytes of attention_grad(_saved): dqkv, dctx, each row's
 * D_i = dctx_i . ctx_i; without the saved forward also qkv, ctx, lse. */
int64_t cu_attention_grad_scratch(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  int64_t BT = x->d[0] * x->d[1], D = x->d[2], rows = BT * (n->attr.heads > 0 ? n->attr.heads : 1);
  int64_t bytes = 4 * (BT * 3 * D + BT * D + rows);
  if (n->op == IR_ATTENTION_GRAD) bytes += 4 * (BT * 3 * D + BT * D + rows);
  return bytes;
}

/* The backward, flash-style: the softmax rows are recomputed from q, k and
 * each row's logsumexp, never stored. Two kernels, each a warp per row of
 * one head: the query pass (D_i = dctx_i . ctx_i, then dq_i = SCALE sum_j
 * p_ij (dctx_i . v_j - D_i) k_j) and the key pass (dk_j = SCALE sum_i
 * p_ij (dctx_i . v_j - D_i) q_i, dv_j = sum_i p_ij dctx_i; causal: i >= j),
 * so every gradient row is written by one warp and no atomics are needed.
 * The four products and the two column sums go around them. */
int cu_render_attention_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int saved = n->op == IR_ATTENTION_GRAD_SAVED;
  attn_dims a;
  if (dims_of(r, n, &a)) return -1;
  int64_t BT = a.BT, D = a.D, rows = a.B * a.H * a.T;
  int64_t scr = r->p->buf[r->k->node].scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for the attention gradient");
  cu_ref dqkv = cu_ref_at(CU_REF_ARENA, scr), dctx = cu_ref_at(CU_REF_ARENA, scr + BT * 3 * D * 4);
  cu_ref dl = cu_ref_at(CU_REF_ARENA, scr + BT * 4 * D * 4), qkv, ctx, lse;
  int out = r->k->node, xn = n->in[0], wq = n->in[1], wp = n->in[3], dy = n->in[5];
  /* the products' operands: bf16 (the parts in scratch) when x or dy is (train_bf16) */
  int lo = train_bf16(r, n);
  int64_t gb[GB_N];
  grad_bf16_layout(BT, D, scr + cu_attention_grad_scratch(r->g, n), gb);
  cu_ref X = cu_ref_at(xn, 0), WQ = cu_ref_at(wq, 0), WP = cu_ref_at(wp, 0), DY = cu_ref_at(dy, 0);
  if (lo && (cu_as_bf16(r, xn, X, BT * D, gb[GB_X], &X) || cu_as_bf16(r, wq, WQ, D * 3 * D, gb[GB_WQ], &WQ) ||
             cu_as_bf16(r, wp, WP, D * D, gb[GB_WP], &WP) || cu_as_bf16(r, dy, DY, BT * D, gb[GB_DY], &DY)))
    return -1;
  const char *gt = lo ? "lt_bf16" : "float"; /* dctx's and dqkv's type */
  if (saved) {
    int sv = n->in[6];
    qkv = cu_ref_at(sv, BT * D * 4), ctx = cu_ref_at(sv, BT * 4 * D * 4), lse = cu_ref_at(sv, BT * 5 * D * 4);
  } else { /* the forward again, into scratch */
    int64_t at = scr + BT * 4 * D * 4 + rows * 4;
    qkv = cu_ref_at(CU_REF_ARENA, at), ctx = cu_ref_at(CU_REF_ARENA, at + BT * 3 * D * 4);
    lse = cu_ref_at(CU_REF_ARENA, at + BT * 4 * D * 4);
    if (gemm_raw(r, BT, D, 3 * D, X, WQ, qkv, cu_ref_at(n->in[2], 0))) return -1;
    if (lo) cu_gemm_bf16(r, 0);
    if (fwd_kernel(r, &a, qkv, ctx, lse, 1, "float")) return -1;
  }
  cu_ref CTX = ctx; /* the context as dwp's operand */
  if (lo && cu_as_bf16(r, -1, ctx, BT * D, gb[GB_CTX], &CTX)) return -1;
  /* result [dx | dwq | dbq | dwp | dbp] */
  int64_t o_dwq = BT * D * 4, o_dbq = o_dwq + D * 3 * D * 4, o_dwp = o_dbq + 3 * D * 4, o_dbp = o_dwp + D * D * 4;
  cu_ref none = cu_ref_at(CU_REF_NONE, 0);
  /* dwp = ctx^T dy, dbp = dy's column sums */
  if ((lo ? cu_gemm_bgrad_bf16 : cu_gemm_bgrad)(r, D, BT, D, CTX, DY, cu_ref_at(out, o_dwp), cu_ref_at(out, o_dbp)))
    return -1;
  if (cu_gemm_t(r, BT, D, D, 0, 1, DY, WP, dctx, none)) return -1;     /* dctx = dy wp^T */
  if (lo) cu_gemm_bf16(r, 1);
  long long NE = (long long)a.NE;
  char prm[320];
  snprintf(prm, sizeof prm, "const float* __restrict__ qkv, const float* __restrict__ ctx, const float* __restrict__ lse, "
                            "const %s* __restrict__ dctx, float* __restrict__ dl, %s* __restrict__ dqkv) {\n", gt, gt);
  cu_ref ops[6] = {qkv, ctx, lse, dctx, dl, dqkv};
  /* the query pass */
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "%s", prm);
  warp_rows_open(r, &a, "float");
  cu_sb_printf(&r->b, "    float q[%lld], g[%lld], dq[%lld], di = 0.f;\n"
                      "    const long long ro = (b * T + i) * D + h * HD;\n"
                      "    for (int t = 0; t < %lld; t++) {\n      long long e = lane + 32 * t;\n"
                      "      q[t] = e < HD ? base[i * 3 * D + h * HD + e] : 0.f; g[t] = e < HD ? dctx[ro + e] : 0.f;\n"
                      "      di += e < HD ? g[t] * ctx[ro + e] : 0.f; dq[t] = 0.f;\n    }\n"
                      "    di = lt_warp_sum(di);\n    if (lane == 0) dl[w] = di;\n"
                      "    const float L = lse[w];\n    long long nj = %s;\n"
                      "    for (long long j = 0; j < nj; j++) {\n"
                      "      const float* kr = base + j * 3 * D + D + h * HD;\n      const float* vr = kr + D;\n"
                      "      float s = 0.f, dp = 0.f;\n      " FOR_T(a, "s += q[t] * kr[e]; dp += g[t] * vr[e];") "\n"
                      "      s = lt_warp_sum(s) * SCALE; dp = lt_warp_sum(dp);\n"
                      "      float ds = expf(s - L) * (dp - di) * SCALE;\n"
                      "      " FOR_T(a, "dq[t] += ds * kr[e];") "\n    }\n"
                      "    " FOR_T(a, "dqkv[(b * T + i) * 3 * D + h * HD + e] = dq[t];") "\n  }\n}\n",
               NE, NE, NE, NE, a.causal ? "i + 1" : "T", NE, NE, NE);
  unsigned grid = cu_blocks(rows * 32, 256);
  if (cu_end(r, grid, 256, ops, 6)) return -1;
  /* the key pass: row w's position i is the key j */
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "%s", prm);
  warp_rows_open(r, &a, "float");
  cu_sb_printf(&r->b, "    (void)ctx;\n    const long long j = i;\n    float k[%lld], v[%lld], dk[%lld], dv[%lld];\n"
                      "    const float* kr = base + j * 3 * D + D + h * HD;\n"
                      "    for (int t = 0; t < %lld; t++) {\n      long long e = lane + 32 * t;\n"
                      "      k[t] = e < HD ? kr[e] : 0.f; v[t] = e < HD ? kr[D + e] : 0.f; dk[t] = 0.f; dv[t] = 0.f;\n    }\n"
                      "    for (long long qi = %s; qi < T; qi++) {\n"
                      "      const float* qr = base + qi * 3 * D + h * HD;\n"
                      "      const auto* gr = dctx + (b * T + qi) * D + h * HD;\n"
                      "      const long long qw = (b * H + h) * T + qi;\n"
                      "      float s = 0.f, dp = 0.f;\n      " FOR_T(a, "s += qr[e] * k[t]; dp += gr[e] * v[t];") "\n"
                      "      s = lt_warp_sum(s) * SCALE; dp = lt_warp_sum(dp);\n"
                      "      float p = expf(s - lse[qw]), ds = p * (dp - dl[qw]) * SCALE;\n"
                      "      " FOR_T(a, "dk[t] += ds * qr[e]; dv[t] += p * gr[e];") "\n    }\n"
                      "    " FOR_T(a, "dqkv[(b * T + j) * 3 * D + D + h * HD + e] = dk[t]; "
                                      "dqkv[(b * T + j) * 3 * D + 2 * D + h * HD + e] = dv[t];") "\n  }\n}\n",
               NE, NE, NE, NE, NE, a.causal ? "j" : "0", NE, NE, NE);
  if (cu_end(r, grid, 256, ops, 6)) return -1;
  /* dwq = x^T dqkv, dbq = dqkv's column sums */
  if ((lo ? cu_gemm_bgrad_bf16 : cu_gemm_bgrad)(r, D, BT, 3 * D, X, dqkv, cu_ref_at(out, o_dwq), cu_ref_at(out, o_dbq)))
    return -1;
  /* The key bias adds q_i . b_k to every logit of row i alike, which the
   * softmax cancels: its gradient is exactly zero, as the interpreter and
   * the CPU kernels store it (rt/rt_seq.c). The column sums give rounding
   * noise that Adam scales up to lr-sized steps, differently for each batch
   * split (one GPU against several ranks). */
  cu_launch z = {.what = CU_L_ZERO, .zero = cu_ref_at(out, o_dbq + D * 4), .zero_bytes = D * 4};
  if (cu_add_launch(r, &z)) return -1;
  if (cu_gemm_t(r, BT, 3 * D, D, 0, 1, dqkv, WQ, cu_ref_at(out, 0), none)) return -1; /* dx = dqkv wq^T */
  if (lo) cu_gemm_bf16(r, 0);
  return 0;
}
