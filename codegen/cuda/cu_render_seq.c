/* cu_render_seq.c -- the recurrences (rnn, lstm, gru) and their gradients
 * with the sequence loop on the device.
 *
 * Forward: the input projection of every step at once (a = x w_ih + b_ih,
 * one product into the kernel's scratch), then one kernel with a block per
 * sequence that walks t = 0 .. T-1: each thread owns hidden units, computes
 * their gates from a and h_{t-1} w_hh (h_{t-1} in shared memory, double
 * buffered, one __syncthreads per step) and writes h_t. The LSTM's cell
 * stays in shared memory.
 *
 * Backward (ir/interp_seq_grad.c's algorithm): a again, h_{t-1} (y shifted)
 * and ah = h_{t-1} w_hh (+ b_hh) as products, then a block per sequence
 * walks t = T-1 .. 0 with the recurrent gradient in shared memory: the gate
 * gradients of step t (the LSTM's cell recomputed forward first, per unit),
 * then drec = dah_t w_hh^T for step t-1. The weight gradients, dx and the
 * biases are products and column sums over all steps afterwards. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cu_render.h"

enum { MAX_HIDDEN = 2048 }; /* the shared arrays: 4 of them, 32 KiB at most */

typedef struct {
  int op;                 /* IR_RNN, IR_LSTM, IR_GRU */
  int64_t B, T, in, h, G; /* G gates of h columns */
  unsigned threads;
} seq_dims;

static int dims_of(cu_rctx *r, const ir_node *n, int op, seq_dims *s) {
  const ir_shape *x = &r->g->nodes[n->in[0]].shape, *whh = &r->g->nodes[n->in[2]].shape;
  s->op = op;
  s->B = x->d[0], s->T = x->d[1], s->in = x->d[2], s->h = whh->d[0];
  s->G = op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1;
  if (s->h > MAX_HIDDEN) return cu_unsupported(r, "a hidden size above %d", MAX_HIDDEN);
  s->threads = 32;
  while (s->threads < 1024 && (int64_t)s->threads < s->h) s->threads *= 2;
  return 0;
}

static void consts(cu_sb *b, const seq_dims *s) {
  cu_sb_printf(b, "  const long long B = %lldLL, T = %lldLL, HH = %lldLL, GH = %lldLL;\n  (void)GH;\n",
               (long long)s->B, (long long)s->T, (long long)s->h, (long long)(s->G * s->h));
}
#define FOR_J "for (long long j = threadIdx.x; j < HH; j += blockDim.x)"

static int op_of(int grad_op) {
  return grad_op == IR_LSTM || grad_op == IR_LSTM_GRAD ? IR_LSTM : grad_op == IR_GRU || grad_op == IR_GRU_GRAD ? IR_GRU : IR_RNN;
}

/* the gates of unit j at row `row` as g0..g{G-1} (pre-activations of x and h
 * separately for the GRU's n gate: an, hn), then the unit's new value hv */
static void step_forward(cu_sb *b, const seq_dims *s) {
  for (int g = 0; g < s->G; g++) cu_sb_printf(b, "        float s%d = 0.f;\n", g);
  cu_sb_printf(b, "        for (long long k = 0; k < HH; k++) {\n          float hk = hp[k];\n");
  for (int g = 0; g < s->G; g++) cu_sb_printf(b, "          s%d += hk * whh[k * GH + %d * HH + j];\n", g, g);
  cu_sb_printf(b, "        }\n        const float* ar = a + (b * T + t) * GH;\n");
  if (s->op == IR_RNN) cu_sb_printf(b, "        float hv = tanhf(ar[j] + s0);\n");
  else if (s->op == IR_LSTM)
    cu_sb_printf(b, "        float ig = lt_sigmoid(ar[j] + s0), fg = lt_sigmoid(ar[HH + j] + s1);\n"
                    "        float gg = tanhf(ar[2 * HH + j] + s2), og = lt_sigmoid(ar[3 * HH + j] + s3);\n"
                    "        float c = fg * cs[j] + ig * gg;\n        cs[j] = c;\n        float hv = og * tanhf(c);\n");
  else
    cu_sb_printf(b, "        float rg = lt_sigmoid(ar[j] + s0 + bhh[j]), zg = lt_sigmoid(ar[HH + j] + s1 + bhh[HH + j]);\n"
                    "        float ng = tanhf(ar[2 * HH + j] + rg * (s2 + bhh[2 * HH + j]));\n"
                    "        float hv = (1.f - zg) * ng + zg * hp[j];\n");
}

static int64_t al256(int64_t b) { return (b + 255) / 256 * 256; }

/* --precision bf16, the forward: a bf16 x or y makes the input projection
 * a bf16 x bf16 product (f32 sums into the f32 a), w_ih (and an f32 x)
 * rounded into the scratch after a first; a bf16 y is written by the
 * kernel directly (lt_bf16: each h_t rounded once, the recurrent state in
 * shared memory and every sum f32). No f32 copy of x or y. */
static int in_proj(cu_rctx *r, const ir_node *n, const seq_dims *s, cu_ref a) {
  int64_t BT = s->B * s->T, GH = s->G * s->h, at = a.off + al256(4 * BT * GH);
  cu_ref x = cu_ref_at(n->in[0], 0), w = cu_ref_at(n->in[1], 0);
  int lo = cu_is_bf16(r, &r->g->nodes[n->in[0]]) || cu_is_bf16(r, &r->g->nodes[r->k->node]);
  if (lo && (cu_as_bf16(r, n->in[1], w, s->in * GH, at, &w) ||
             cu_as_bf16(r, n->in[0], x, BT * s->in, at + al256(2 * s->in * GH), &x)))
    return -1;
  if (cu_gemm_t(r, BT, s->in, GH, 0, 0, x, w, a, cu_ref_at(n->in[3], 0))) return -1;
  if (lo) cu_gemm_bf16(r, 0);
  return 0;
}

int64_t cu_seq_scratch_bf16(const ir_graph *g, const ir_node *n) {
  return al256(cu_seq_scratch(g, n)) + al256(2 * ir_numel(&g->nodes[n->in[1]].shape)) +
         al256(2 * ir_numel(&g->nodes[n->in[0]].shape));
}

static int r_seq(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  seq_dims s;
  if (dims_of(r, n, n->op, &s)) return -1;
  int64_t scr = r->p->buf[r->k->node].scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for the input projection");
  cu_ref a = cu_ref_at(CU_REF_ARENA, scr);
  if (in_proj(r, n, &s, a)) return -1;
  cu_begin(r, (int)s.threads);
  cu_sb_printf(&r->b, "const float* __restrict__ a, const float* __restrict__ whh, const float* __restrict__ bhh");
  cu_param(r, "y", &r->g->nodes[r->k->node], 1);
  cu_sb_printf(&r->b, ") {\n");
  consts(&r->b, &s);
  /* only the lstm has a cell state: a cs[] the others set and never read
   * is an NVRTC warning (#550) */
  int lstm = s.op == IR_LSTM;
  char cell[48] = "";
  if (lstm) snprintf(cell, sizeof cell, ", cs[%lld]", (long long)s.h);
  cu_sb_printf(&r->b, "  __shared__ float hs[2 * %lld]%s;\n  (void)bhh;\n"
                      "  for (long long b = blockIdx.x; b < B; b += gridDim.x) {\n"
                      "    " FOR_J " { hs[j] = 0.f;%s }\n    __syncthreads();\n"
                      "    for (long long t = 0; t < T; t++) {\n"
                      "      const float* hp = hs + (t & 1) * HH;\n      float* hn = hs + ((t + 1) & 1) * HH;\n"
                      "      " FOR_J " {\n",
               (long long)s.h, cell, lstm ? " cs[j] = 0.f;" : "");
  step_forward(&r->b, &s);
  cu_sb_printf(&r->b, "        hn[j] = hv;\n        y[(b * T + t) * HH + j] = hv;\n      }\n      __syncthreads();\n"
                      "    }\n  }\n}\n");
  /* the GRU's b_hh is its fifth input; the others pass their bias (unread) */
  cu_ref ops[4] = {a, cu_ref_at(n->in[2], 0), cu_ref_at(n->in[s.op == IR_GRU ? 4 : 3], 0), cu_ref_at(r->k->node, 0)};
  return cu_end(r, (unsigned)(s.B < 65535 ? s.B : 65535), s.threads, ops, 4);
}

/* The backward's scratch, in parts at 256-byte boundaries: a, ah, da, dah
 * [BT, GH] (f32: the step loop's operands), h_{t-1} [BT, h], the LSTM cell
 * [BT, h] (f32). In --precision bf16 (lo) the products read bf16 with f32
 * sums: h_{t-1} is bf16 (it is only a product's operand; a bf16 y shifts
 * into it exactly), and after the f32 parts come w_ih, w_hh and an f32 x
 * rounded for the products, and da16, dah16 (the GRU's; the others' dah is
 * da): the step loop's gate gradients, which it keeps in f32 for its own
 * recurrence, rounded once as it writes them. */
enum { SA, SAH, SDA, SDAH, SHP, SCELL, SWIH, SWHH, SX, SDA16, SDAH16, S_N };

static int64_t grad_layout(const ir_graph *g, const ir_node *n, int lo, int64_t off[S_N]) {
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  int op = op_of(n->op);
  int64_t BT = x->d[0] * x->d[1], in = x->d[2], h = g->nodes[n->in[2]].shape.d[0];
  int64_t GH = (op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1) * h;
  const int64_t bytes[S_N] = {4 * BT * GH, 4 * BT * GH, 4 * BT * GH, 4 * BT * GH, (lo ? 2 : 4) * BT * h,
                              4 * BT * h, lo * 2 * in * GH, lo * 2 * h * GH, lo * 2 * BT * in, lo * 2 * BT * GH,
                              lo * (op == IR_GRU) * 2 * BT * GH};
  int64_t at = 0;
  for (int i = 0; i < S_N; i++) off[i] = at, at += al256(bytes[i]);
  return at;
}

/* Scratch bytes: forward a [BT, GH]; the backward's grad_layout. */
int64_t cu_seq_scratch(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  int op = op_of(n->op);
  int64_t BT = x->d[0] * x->d[1], h = g->nodes[n->in[2]].shape.d[0], off[S_N];
  int64_t GH = (op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1) * h;
  if (n->op == IR_RNN || n->op == IR_LSTM || n->op == IR_GRU) return 4 * BT * GH;
  return grad_layout(g, n, 0, off);
}

/* the bf16 plan's: room for either form (lo's parts after h_{t-1} outweigh
 * the f32 h_{t-1}'s half, but take the larger all the same) */
int64_t cu_seq_grad_scratch_bf16(const ir_graph *g, const ir_node *n) {
  int64_t off[S_N], lo = grad_layout(g, n, 1, off), f32 = grad_layout(g, n, 0, off);
  return lo > f32 ? lo : f32;
}

/* the gate gradients of unit j at row `row` into da (and dah), dh given */
static void step_backward(cu_sb *b, const seq_dims *s) {
  if (s->op == IR_RNN) {
    cu_sb_printf(b, "        float hv = y[row * HH + j];\n        da[row * HH + j] = dh * (1.f - hv * hv);\n");
    return;
  }
  cu_sb_printf(b, "        const float* ar = a + row * GH; const float* hr = ah + row * GH;\n");
  if (s->op == IR_LSTM) {
    cu_sb_printf(b, "        float ig = lt_sigmoid(ar[j] + hr[j]), fg = lt_sigmoid(ar[HH + j] + hr[HH + j]);\n"
                    "        float gg = tanhf(ar[2 * HH + j] + hr[2 * HH + j]), og = lt_sigmoid(ar[3 * HH + j] + hr[3 * HH + j]);\n"
                    "        float tc = tanhf(cell[row * HH + j]), cp = t ? cell[(row - 1) * HH + j] : 0.f;\n"
                    "        float dct = dcs[j] + dh * og * (1.f - tc * tc);\n"
                    "        float* dr = da + row * GH;\n"
                    "        dr[j] = dct * gg * ig * (1.f - ig);\n        dr[HH + j] = dct * cp * fg * (1.f - fg);\n"
                    "        dr[2 * HH + j] = dct * ig * (1.f - gg * gg);\n        dr[3 * HH + j] = dh * tc * og * (1.f - og);\n"
                    "        dcs[j] = dct * fg;\n");
    return;
  }
  cu_sb_printf(b, "        float rg = lt_sigmoid(ar[j] + hr[j]), zg = lt_sigmoid(ar[HH + j] + hr[HH + j]);\n"
                  "        float ng = tanhf(ar[2 * HH + j] + rg * hr[2 * HH + j]);\n"
                  "        float hp = t ? y[(row - 1) * HH + j] : 0.f;\n"
                  "        float dn = dh * (1.f - zg) * (1.f - ng * ng), dz = dh * (hp - ng) * zg * (1.f - zg);\n"
                  "        float dr = dn * hr[2 * HH + j] * rg * (1.f - rg);\n"
                  "        float* d1 = da + row * GH; float* d2 = dah + row * GH;\n"
                  "        d1[j] = d2[j] = dr; d1[HH + j] = d2[HH + j] = dz;\n"
                  "        d1[2 * HH + j] = dn; d2[2 * HH + j] = dn * rg;\n"
                  "        dcs[j] = dh * zg;\n");
}

static const char *type_of(cu_rctx *r, int node) { return cu_is_bf16(r, &r->g->nodes[node]) ? "lt_bf16" : "float"; }

/* rnn_grad, lstm_grad, gru_grad: x, w_ih, w_hh, b (b_ih, b_hh), y, dy ->
 * [dx | dw_ih | dw_hh | db (| db_hh)] */
static int r_seq_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  seq_dims s;
  if (dims_of(r, n, op_of(n->op), &s)) return -1;
  int gru = s.op == IR_GRU;
  int64_t BT = s.B * s.T, GH = s.G * s.h, h = s.h;
  int64_t scr = r->p->buf[r->k->node].scr, off[S_N];
  if (scr < 0) return cu_unsupported(r, "no scratch for the recurrence's gradient");
  int xn = n->in[0], wih = n->in[1], whh = n->in[2], bih = n->in[3], bhh = gru ? n->in[4] : -1;
  int yn = n->in[gru ? 5 : 4], dy = n->in[gru ? 6 : 5], out = r->k->node;
  /* --precision bf16: x, y or dy is bf16 */
  int lo = cu_is_bf16(r, &r->g->nodes[xn]) || cu_is_bf16(r, &r->g->nodes[yn]) || cu_is_bf16(r, &r->g->nodes[dy]);
  grad_layout(r->g, n, lo, off);
  cu_ref p[S_N];
  for (int i = 0; i < S_N; i++) p[i] = cu_ref_at(CU_REF_ARENA, scr + off[i]);
  cu_ref a = p[SA], ah = p[SAH], da = p[SDA], dah = gru ? p[SDAH] : p[SDA], hp = p[SHP], cell = p[SCELL];
  cu_ref da16 = lo ? p[SDA16] : da, dah16 = lo ? (gru ? p[SDAH16] : p[SDA16]) : dah; /* the products' operands */
  cu_ref none = cu_ref_at(CU_REF_NONE, 0), X = cu_ref_at(xn, 0), WIH = cu_ref_at(wih, 0), WHH = cu_ref_at(whh, 0);
  if (lo && (cu_as_bf16(r, xn, X, BT * s.in, p[SX].off, &X) || cu_as_bf16(r, wih, WIH, s.in * GH, p[SWIH].off, &WIH) ||
             cu_as_bf16(r, whh, WHH, h * GH, p[SWHH].off, &WHH)))
    return -1;
  const char *ht = lo ? "lt_bf16" : "float"; /* h_{t-1}'s type */
  /* a = x w_ih + b_ih; h_{t-1}; ah = h_{t-1} w_hh (+ b_hh) */
  if (cu_gemm_t(r, BT, s.in, GH, 0, 0, X, WIH, a, cu_ref_at(bih, 0))) return -1;
  if (lo) cu_gemm_bf16(r, 0);
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const %s* __restrict__ y, %s* __restrict__ hp) {\n", type_of(r, yn), ht);
  cu_grid_loop(&r->b, BT * h);
  cu_sb_printf(&r->b, "    long long t = e / %lldLL %% %lldLL;\n    hp[e] = t ? (float)y[e - %lldLL] : 0.f;\n  }\n}\n",
               (long long)h, (long long)s.T, (long long)h);
  cu_ref sh[2] = {cu_ref_at(yn, 0), hp};
  if (cu_end(r, cu_blocks(BT * h, 256), 256, sh, 2)) return -1;
  if (s.op != IR_RNN) {
    if (cu_gemm_t(r, BT, h, GH, 0, 0, hp, WHH, ah, gru ? cu_ref_at(bhh, 0) : none)) return -1;
    if (lo) cu_gemm_bf16(r, 0);
  }
  /* the sequence loop, backwards (whh f32: the recurrent products in f32 registers) */
  cu_begin(r, (int)s.threads);
  cu_sb_printf(&r->b, "const float* __restrict__ a, const float* __restrict__ ah, const %s* __restrict__ y,"
                      " const %s* __restrict__ dy, const float* __restrict__ whh, float* da, float* dah,"
                      " float* __restrict__ cell",
               type_of(r, yn), type_of(r, dy));
  if (lo) cu_sb_printf(&r->b, ", lt_bf16* da16, lt_bf16* dah16");
  cu_sb_printf(&r->b, ") {\n");
  consts(&r->b, &s);
  /* dcs: the lstm's cell gradient, the gru's carried dh * z; the rnn has
   * none (a shared array set and never read is NVRTC's warning #550) */
  int carry = s.op != IR_RNN;
  cu_sb_printf(&r->b, "  __shared__ float drec[%lld]", (long long)h);
  if (carry) cu_sb_printf(&r->b, ", dcs[%lld]", (long long)h);
  cu_sb_printf(&r->b, ";\n  (void)a; (void)ah; (void)dah; (void)cell;\n"
                      "  for (long long b = blockIdx.x; b < B; b += gridDim.x) {\n");
  if (s.op == IR_LSTM) /* the cell, forward: each unit's own recurrence */
    cu_sb_printf(&r->b, "    " FOR_J " {\n      float c = 0.f;\n      for (long long t = 0; t < T; t++) {\n"
                        "        long long row = b * T + t; const float* ar = a + row * GH; const float* hr = ah + row * GH;\n"
                        "        float ig = lt_sigmoid(ar[j] + hr[j]), fg = lt_sigmoid(ar[HH + j] + hr[HH + j]);\n"
                        "        float gg = tanhf(ar[2 * HH + j] + hr[2 * HH + j]);\n"
                        "        c = fg * c + ig * gg;\n        cell[row * HH + j] = c;\n      }\n    }\n");
  cu_sb_printf(&r->b, "    " FOR_J " { drec[j] = 0.f;%s }\n    __syncthreads();\n"
                      "    for (long long t = T - 1; t >= 0; t--) {\n      long long row = b * T + t;\n"
                      "      " FOR_J " {\n        float dh = dy[row * HH + j] + drec[j];\n",
               carry ? " dcs[j] = 0.f;" : "");
  step_backward(&r->b, &s);
  if (lo) /* the unit's gate gradients rounded once for the products (this thread wrote them) */
    cu_sb_printf(&r->b, "        for (long long c = j; c < GH; c += HH) { da16[row * GH + c] = da[row * GH + c];%s }\n",
                 gru ? " dah16[row * GH + c] = dah[row * GH + c];" : "");
  cu_sb_printf(&r->b, "      }\n      __syncthreads();\n"
                      "      const float* dr = dah + row * GH;\n"
                      "      " FOR_J " {\n        float acc = %s;\n"
                      "        for (long long c = 0; c < GH; c++) acc += dr[c] * whh[j * GH + c];\n"
                      "        drec[j] = acc;\n      }\n      __syncthreads();\n    }\n  }\n}\n",
               gru ? "dcs[j]" : "0.f");
  cu_ref ops[10] = {a, ah, cu_ref_at(yn, 0), cu_ref_at(dy, 0), cu_ref_at(whh, 0), da, dah, cell, da16, dah16};
  if (cu_end(r, (unsigned)(s.B < 65535 ? s.B : 65535), s.threads, ops, lo ? 10 : 8)) return -1;
  /* [dx | dw_ih | dw_hh | db (| db_hh)] */
  int64_t o_dwih = 4 * BT * s.in, o_dwhh = o_dwih + 4 * s.in * GH, o_db = o_dwhh + 4 * h * GH;
  int (*bgrad)(cu_rctx *, int64_t, int64_t, int64_t, cu_ref, cu_ref, cu_ref, cu_ref) =
      lo ? cu_gemm_bgrad_bf16 : cu_gemm_bgrad;
  if (cu_gemm_t(r, BT, GH, s.in, 0, 1, da16, WIH, cu_ref_at(out, 0), none)) return -1; /* dx = da w_ih^T */
  if (lo) cu_gemm_bf16(r, 0);
  /* dw_ih = x^T da with db = da's column sums; dw_hh = h_prev^T dah (with the GRU's db_hh = dah's sums) */
  if (bgrad(r, s.in, BT, GH, X, da16, cu_ref_at(out, o_dwih), cu_ref_at(out, o_db))) return -1;
  if (gru) return bgrad(r, h, BT, GH, hp, dah16, cu_ref_at(out, o_dwhh), cu_ref_at(out, o_db + 4 * GH));
  if (cu_gemm_t(r, h, BT, GH, 1, 0, hp, dah16, cu_ref_at(out, o_dwhh), none)) return -1;
  if (lo) cu_gemm_bf16(r, 0);
  return 0;
}

cu_render_fn cu_seq_renderer(int op) {
  switch (op) {
  case IR_RNN: case IR_LSTM: case IR_GRU: return r_seq;
  case IR_RNN_GRAD: case IR_LSTM_GRAD: case IR_GRU_GRAD: return r_seq_grad;
  default: return NULL;
  }
}
