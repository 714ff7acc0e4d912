/* cu_render_misc.c -- the one-node kernels beyond the common rows: argmax
 * and argmin, cumsum, one_hot, gather and its scatter-add gradient, max_grad,
 * the losses nll and kl_div and the gradients of nll and bce, the channel
 * normalisations (batchnorm in both forms, groupnorm, rmsnorm) and their
 * gradient, the random ops (Philox on the device: ir/rng.c's stream, so the
 * values equal the interpreter's), and the decode step's kv_write and
 * attention_decode. Each follows its reference kernel in ir/interp_*.c:
 * the same first-match rules, the same status on a bad id or index. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/norm.h"
#include "codegen/cuda/cu_render.h"

enum { EW = 256, LOSS_THREADS = 1024 };

/* A thread per line of [outer, len, inner] (the sequential ops: a line's
 * elements depend on each other or on a first match): `body` sees base, L
 * (the line's length) and IN (its stride). */
static int per_line(cu_rctx *r, const ir_shape *s, int64_t axis, int nops, unsigned out, const char *body) {
  int64_t outer, len, inner;
  cu_around(s, axis, &outer, &len, &inner);
  int64_t lines = outer * inner;
  cu_begin(r, EW);
  cu_params_out(r, nops, out);
  cu_sb_printf(&r->b, ") {\n  const long long L = %lldLL, IN = %lldLL;\n  (void)L;\n"
                      "  for (long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x; row < %lldLL;"
                      " row += (long long)gridDim.x * blockDim.x) {\n"
                      "    long long base = (row / IN) * L * IN + row %% IN;\n%s  }\n}\n",
               (long long)len, (long long)inner, (long long)lines, body);
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  return cu_end(r, cu_blocks(lines, EW), EW, ops, nops);
}

/* argmax/argmin: the first extremum, a NaN counting as one (torch.argmax) */
/* A block per line, for few long lines (the decode step's argmax over a
 * vocabulary of 50257: a thread per line would walk it alone): each thread
 * keeps the first extremum of its strided share, then the block picks by
 * the same rule with the lower index winning ties (warp shuffles, then one
 * (value, index) pair per warp in shared memory). */
static int argext_block(cu_rctx *r, int64_t outer, int64_t len, int64_t inner, char cmp) {
  cu_begin(r, 1024);
  cu_params(r, 2);
  cu_sb_printf(&r->b,
               ") {\n  const long long L = %lldLL, IN = %lldLL;\n"
               "  __shared__ float sv[32];\n  __shared__ long long si[32];\n"
               "  for (long long row = blockIdx.x; row < %lldLL; row += gridDim.x) {\n"
               "    long long base = (row / IN) * L * IN + row %% IN, bi = -1;\n    float b = 0.f;\n"
               "    for (long long l = threadIdx.x; l < L; l += blockDim.x) {\n"
               "      float v = (float)a1[base + l * IN];\n"
               "      if (bi < 0 || (b == b && (v != v || v %c b))) b = v, bi = l;\n    }\n"
               "    // (b, bi) against (v, vi): a NaN wins, then the extremum, then the lower index; -1 is no candidate\n"
               "    for (int o = 16; o > 0; o >>= 1) {\n"
               "      float v = __shfl_down_sync(0xffffffffu, b, o);\n"
               "      long long vi = __shfl_down_sync(0xffffffffu, bi, o);\n"
               "      if (vi >= 0 && (bi < 0 || (v != v ? (b == b || vi < bi) : (b == b && (v %c b || (v == b && vi < bi))))))\n"
               "        b = v, bi = vi;\n    }\n"
               "    if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = b, si[threadIdx.x >> 5] = bi;\n"
               "    __syncthreads();\n"
               "    if (threadIdx.x == 0) {\n"
               "      for (int w = 1; w < (int)(blockDim.x >> 5); w++) {\n"
               "        float v = sv[w];\n        long long vi = si[w];\n"
               "        if (vi >= 0 && (bi < 0 || (v != v ? (b == b || vi < bi) : (b == b && (v %c b || (v == b && vi < bi))))))\n"
               "          b = v, bi = vi;\n      }\n"
               "      a0[row] = (int)bi;\n    }\n    __syncthreads();\n  }\n}\n",
               (long long)len, (long long)inner, (long long)(outer * inner), cmp, cmp, cmp);
  cu_ref ops[2];
  cu_refs(r, ops, 2);
  return cu_end(r, cu_blocks(outer * inner, 1), 1024, ops, 2);
}

static int r_argext(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1);
  int64_t outer, len, inner;
  cu_around(&x->shape, n->attr.axis, &outer, &len, &inner);
  if (len >= 4096 && outer * inner <= 1024) return argext_block(r, outer, len, inner, n->op == IR_ARGMAX ? '>' : '<');
  char body[512];
  snprintf(body, sizeof body,
           "    long long best = 0;\n    for (long long l = 1; l < L; l++) {\n"
           "      float v = (float)a1[base + l * IN], b = (float)a1[base + best * IN];\n"
           "      if (b == b && (v != v || v %c b)) best = l;\n    }\n    a0[row] = (int)best;\n",
           n->op == IR_ARGMAX ? '>' : '<');
  return per_line(r, &x->shape, n->attr.axis, 2, 1, body);
}

static int r_cumsum(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  char body[512];
  snprintf(body, sizeof body,
           "    float acc = 0.f;\n    for (long long s = 0; s < L; s++) {\n"
           "      long long at = base + (%s) * IN;\n      acc += a1[at];\n      a0[at] = acc;\n    }\n",
           n->attr.i ? "L - 1 - s" : "s");
  return per_line(r, &n->shape, n->attr.axis, 2, 1, body);
}

/* dy to the first position equal to the result (NaN matching NaN), 0 elsewhere */
static int r_max_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  return per_line(r, &n->shape, n->attr.axis, 4, 1,
                  "    float m = a2[row], g = a3[row];\n    int done = 0;\n"
                  "    for (long long l = 0; l < L; l++) {\n      float v = a1[base + l * IN];\n"
                  "      int hit = !done && (v == m || (v != v && m != m));\n"
                  "      a0[base + l * IN] = hit ? g : 0.f;\n      done |= hit;\n    }\n");
}

static int r_one_hot(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t C = n->attr.n;
  char body[512];
  snprintf(body, sizeof body,
           "    long long i = e / %lldLL, j = e %% %lldLL; double id = (double)a1[i];\n"
           "    if (!(id >= 0.0 && id < %lld.0 && id == floor(id))) { lt_fail(status, %lld); a0[e] = 0.f; continue; }\n"
           "    a0[e] = (long long)id == j ? 1.f : 0.f;\n",
           (long long)C, (long long)C, (long long)C, cu_code_of(r->k->node, 0));
  return cu_per_element(r, 2, 1, body);
}

/* The flat offset in x (shape sx) of element e of the index (shape si),
 * the axis coordinate replaced by v (ik_gather_at), as statements. */
static void gather_at(cu_sb *b, const ir_shape *sx, const ir_shape *si, int ax) {
  cu_sb_printf(b, "    long long at = 0");
  int64_t div = 1, stride = 1;
  for (int k = si->rank - 1; k >= 0; k--) {
    if (k == ax) cu_sb_printf(b, " + v * %lldLL", (long long)stride);
    else cu_sb_printf(b, " + (e / %lldLL %% %lldLL) * %lldLL", (long long)div, (long long)si->d[k], (long long)stride);
    div *= si->d[k], stride *= sx->d[k];
  }
  cu_sb_printf(b, ";\n");
}

static int r_gather(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = cu_opn(r, 1), *ix = cu_opn(r, 2);
  int ax = (int)n->attr.axis;
  cu_sb b = {0};
  cu_sb_printf(&b, "    double iv = (double)a2[e];\n"
                   "    if (!(iv >= 0.0 && iv < %lld.0 && iv == floor(iv))) { lt_fail(status, %lld); a0[e] = 0; continue; }\n"
                   "    long long v = (long long)iv;\n",
               (long long)x->shape.d[ax], cu_code_of(r->k->node, 2));
  gather_at(&b, &x->shape, &ix->shape, ax);
  cu_sb_printf(&b, "    a0[e] = a1[at];\n");
  int rc = b.oom ? ir_fail(r->msg, r->msgn, "out of memory") : cu_per_element(r, 3, 1, b.s);
  free(b.s);
  return rc;
}

/* dy scattered into x's shape: zero it, then atomic adds (repeats sum) */
static int r_gather_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *ix = cu_opn(r, 1);
  if (n->dtype != IR_F32) return cu_unsupported(r, "a gather gradient of %s", ir_dtype_name(n->dtype));
  int ax = (int)n->attr.axis;
  int64_t count = ir_numel(&ix->shape);
  cu_launch z;
  memset(&z, 0, sizeof z);
  z.what = CU_L_ZERO, z.zero.node = r->k->node, z.zero_bytes = ir_numel(&n->shape) * 4;
  if (cu_add_launch(r, &z)) return -1;
  cu_begin(r, EW);
  cu_params(r, 3);
  cu_status_param(r);
  cu_loop_open(&r->b, count);
  cu_sb_printf(&r->b, "    double iv = (double)a1[e];\n"
                      "    if (!(iv >= 0.0 && iv < %lld.0 && iv == floor(iv))) { lt_fail(status, %lld); continue; }\n"
                      "    long long v = (long long)iv;\n",
               (long long)n->shape.d[ax], cu_code_of(r->k->node, 2));
  gather_at(&r->b, &n->shape, &ix->shape, ax);
  cu_sb_printf(&r->b, "    atomicAdd(&a0[at], a2[e]);\n  }\n}\n");
  cu_ref ops[4];
  cu_refs(r, ops, 3);
  ops[3].node = CU_REF_STATUS, ops[3].off = 0;
  return cu_end(r, cu_blocks(count, EW), EW, ops, 4);
}

/* ---- losses ---- */

/* One block sums `term` (of e) over count elements; a0[0] = sum / div. */
static int one_block_sum(cu_rctx *r, int nops, int status, int64_t count, const char *term, double div) {
  cu_begin(r, LOSS_THREADS);
  cu_params(r, nops);
  if (status) cu_status_param(r);
  cu_sb_printf(&r->b, ") {\n  float acc = 0.f;\n  for (long long e = threadIdx.x; e < %lldLL; e += blockDim.x) {\n%s  }\n"
                      "  acc = lt_block_reduce(acc, 0);\n  if (threadIdx.x == 0) a0[0] = acc / %.17g;\n}\n",
               (long long)count, term, div);
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  if (status) ops[nops].node = CU_REF_STATUS, ops[nops].off = 0;
  return cu_end(r, 1, LOSS_THREADS, ops, nops + status);
}

static int r_nll(cu_rctx *r) {
  const ir_node *x = cu_opn(r, 1);
  int64_t C = x->shape.d[x->shape.rank - 1], rows = ir_numel(&x->shape) / C;
  char term[512];
  snprintf(term, sizeof term,
           "    double lab = (double)a2[e];\n"
           "    if (!(lab >= 0.0 && lab < %lld.0 && lab == floor(lab))) { lt_fail(status, %lld); continue; }\n"
           "    acc -= a1[e * %lldLL + (long long)lab];\n",
           (long long)C, cu_code_of(r->k->node, 1), (long long)C);
  return one_block_sum(r, 3, 1, rows, term, (double)rows);
}

static int r_nll_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t C = n->shape.d[n->shape.rank - 1], rows = ir_numel(&n->shape) / C;
  char body[512];
  snprintf(body, sizeof body,
           "    long long row = e / %lldLL, j = e %% %lldLL; double lab = (double)a2[row];\n"
           "    if (!(lab >= 0.0 && lab < %lld.0 && lab == floor(lab))) { lt_fail(status, %lld); a0[e] = 0.f; continue; }\n"
           "    a0[e] = (long long)lab == j ? -a3[0] / %lld.f : 0.f;\n",
           (long long)C, (long long)C, (long long)C, cu_code_of(r->k->node, 1), (long long)rows);
  return cu_per_element(r, 4, 1, body);
}

static int r_kl_div(cu_rctx *r) {
  const ir_node *x = cu_opn(r, 1);
  return one_block_sum(r, 3, 0, ir_numel(&x->shape),
                       "    float t = a2[e];\n    acc += t == 0.f ? 0.f : t * (logf(t) - a1[e]);\n",
                       (double)(x->shape.rank ? x->shape.d[0] : 1));
}

static int r_bce_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  cu_sb b = {0};
  cu_sb_printf(&b, "    a0[e] = a3[0] * (lt_sigmoid(a1[e]) - ");
  cu_load(&b, "a2", &n->shape, cu_opn(r, 2), "e");
  cu_sb_printf(&b, ") / %lld.f;\n", (long long)ir_numel(&n->shape));
  int rc = b.oom ? ir_fail(r->msg, r->msgn, "out of memory") : cu_per_element(r, 4, 0, b.s);
  free(b.s);
  return rc;
}

/* ---- channel normalisations (rt/rt_norm.h's groups) ----
 * A block per group: group q covers rows [n0, n0 + nb) and channels
 * [c0, c0 + cb), all S positions; its element i is at
 * ((n0 + i / (cb S)) C + c0 + i / S % cb) S + i % S. */

static void norm_consts(cu_sb *b, const rt_norm_geom *g) {
  cu_sb_printf(b, ") {\n  const long long C = %lldLL, S = %lldLL, NB = %lldLL, CB = %lldLL, M = NB * CB * S;\n"
                  "  (void)M;\n"
                  "  for (long long q = blockIdx.x; q < %lldLL; q += gridDim.x) {\n"
                  "    long long n0 = q / (C / CB) * NB, c0 = q %% (C / CB) * CB;\n",
               (long long)g->C, (long long)g->S, (long long)g->nb, (long long)g->cb, (long long)g->ngroups);
}
#define NORM_FOR "    for (long long i = threadIdx.x; i < M; i += blockDim.x) { long long c = c0 + i / S %% CB, " \
                 "o = ((n0 + i / (CB * S)) * C + c) * S + i %% S; (void)c; "

/* mean and rstd of the group over x (statements) */
static void norm_stats(cu_sb *b, const rt_norm_geom *g, const char *x) {
  char e[48];
  if (g->center)
    cu_sb_printf(b, "    float mean = 0.f;\n" NORM_FOR "mean += %s[o]; }\n"
                    "    mean = lt_block_reduce(mean, 0) / (float)M;\n", x);
  else cu_sb_printf(b, "    const float mean = 0.f;\n");
  cu_sb_printf(b, "    float var = 0.f;\n" NORM_FOR "float d = %s[o] - mean; var += d * d; }\n"
                  "    float rs = 1.f / sqrtf(lt_block_reduce(var, 0) / (float)M + %s);\n",
               x, cu_flt(g->eps, e, sizeof e));
}

static rt_norm_geom geom_of(const cu_rctx *r, const ir_node *n, int op, int64_t groups) {
  return ir_norm_geom_of(op, &r->g->nodes[n->in[0]].shape, groups, n->attr.f);
}

static int r_norm(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  rt_norm_geom g = geom_of(r, n, n->op, n->attr.k);
  int bias = n->op != IR_RMSNORM, nops = 1 + n->nin;
  if (n->op == IR_BATCHNORM) { /* the running statistics: a map */
    char body[512], e[48];
    snprintf(body, sizeof body, "    long long c = e / %lldLL %% %lldLL;\n"
             "    float sc = a2[c] / sqrtf(a5[c] + %s);\n    a0[e] = (a1[e] - a4[c]) * sc + a3[c];\n",
             (long long)g.S, (long long)g.C, cu_flt(g.eps, e, sizeof e));
    return cu_per_element(r, 6, 0, body);
  }
  unsigned t = cu_row_threads(g.nb * g.cb * g.S);
  cu_begin(r, (int)t);
  cu_params(r, nops);
  norm_consts(&r->b, &g);
  norm_stats(&r->b, &g, "a1");
  cu_sb_printf(&r->b, NORM_FOR "a0[o] = (a1[o] - mean) * rs * a2[c]%s; }\n  }\n}\n", bias ? " + a3[c]" : "");
  cu_ref ops[CU_MAXOPS];
  cu_refs(r, ops, nops);
  return cu_end(r, cu_blocks(g.ngroups, 1), t, ops, nops);
}

/* norm_grad (x, w, dy): dx a block per group; dw and db a block per
 * channel over every (n, s), each group's statistics recomputed into the
 * kernel's scratch first (dw). */
static int r_norm_grad(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  rt_norm_geom g = geom_of(r, n, (int)n->attr.k, n->attr.n);
  if (n->attr.i == 0) {
    unsigned t = cu_row_threads(g.nb * g.cb * g.S);
    cu_begin(r, (int)t);
    cu_params(r, 4);
    norm_consts(&r->b, &g);
    norm_stats(&r->b, &g, "a1");
    cu_sb_printf(&r->b, "    float mg = 0.f, mgx = 0.f;\n"
                        NORM_FOR "float gw = a3[o] * a2[c]; mg += gw; mgx += gw * (a1[o] - mean); }\n"
                        "    mg = %s; mgx = lt_block_reduce(mgx, 0) * rs / (float)M;\n"
                        NORM_FOR "a0[o] = rs * (a3[o] * a2[c] - mg - (a1[o] - mean) * rs * mgx); }\n  }\n}\n",
                 g.center ? "lt_block_reduce(mg, 0) / (float)M" : "0.f");
    cu_ref ops[4];
    cu_refs(r, ops, 4);
    return cu_end(r, cu_blocks(g.ngroups, 1), t, ops, 4);
  }
  int bias = n->attr.i == 2;
  int64_t scr = r->p->buf[r->k->node].scr;
  if (!bias && scr < 0) return cu_unsupported(r, "no scratch for the group statistics");
  cu_ref ops[5];
  cu_refs(r, ops, 4);
  ops[4].node = CU_REF_ARENA, ops[4].off = bias ? 0 : scr;
  if (!bias) {
    unsigned t = cu_row_threads(g.nb * g.cb * g.S);
    cu_begin(r, (int)t);
    cu_params(r, 4);
    cu_sb_printf(&r->b, ", float* __restrict__ st");
    norm_consts(&r->b, &g);
    norm_stats(&r->b, &g, "a1");
    cu_sb_printf(&r->b, "    if (threadIdx.x == 0) { st[2 * q] = mean; st[2 * q + 1] = rs; }\n  }\n}\n");
    if (cu_end(r, cu_blocks(g.ngroups, 1), t, ops, 5)) return -1;
  }
  int64_t per = g.N * g.S;
  unsigned t = cu_row_threads(per);
  cu_begin(r, (int)t);
  cu_params(r, 4);
  cu_sb_printf(&r->b, ", float* __restrict__ st) {\n  const long long N = %lldLL, C = %lldLL, S = %lldLL, NB = %lldLL,"
                      " CB = %lldLL;\n  (void)st; (void)NB; (void)CB;\n"
                      "  for (long long c = blockIdx.x; c < C; c += gridDim.x) {\n    float acc = 0.f;\n"
                      "    for (long long i = threadIdx.x; i < N * S; i += blockDim.x) {\n"
                      "      long long nn = i / S, o = (nn * C + c) * S + i %% S;\n",
               (long long)g.N, (long long)g.C, (long long)g.S, (long long)g.nb, (long long)g.cb);
  if (bias) cu_sb_printf(&r->b, "      acc += a3[o];\n");
  else cu_sb_printf(&r->b, "      long long q = nn / NB * (C / CB) + c / CB;\n"
                           "      acc += a3[o] * (a1[o] - st[2 * q]) * st[2 * q + 1];\n");
  cu_sb_printf(&r->b, "    }\n    acc = lt_block_reduce(acc, 0);\n    if (threadIdx.x == 0) a0[c] = acc;\n  }\n}\n");
  return cu_end(r, cu_blocks(g.C, 1), t, ops, 5);
}

/* ---- random numbers: ir/rng.c's Philox stream (interp_opt.c) ---- */

static int r_random(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int mask = n->op == IR_DROPOUT_MASK;
  const char *blk = mask ? "(unsigned long long)e >> 1" : "(unsigned long long)e";
  char body[1024], keep[48];
  /* key = seed ^ mix64(tag * 0x9E3779B97F4A7C15 ^ step); block e (randn) or e / 2 (dropout) */
  int w = snprintf(body, sizeof body,
                   "    unsigned long long key = %lluull ^ lt_mix64(%lluull ^ (unsigned long long)a1[0]);\n"
                   "    unsigned c[4] = {(unsigned)(%s), (unsigned)((%s) >> 32), 0u, 0u};\n"
                   "    lt_philox(c, (unsigned)key, (unsigned)(key >> 32));\n",
                   (unsigned long long)n->attr.n, (unsigned long long)n->attr.k * 0x9E3779B97F4A7C15ull, blk, blk);
  if (mask) /* the threshold compares in double, as the interpreter's */
    snprintf(body + w, sizeof body - (size_t)w,
             "    int h = (int)(e & 1) * 2;\n    double u = lt_uniform(c[h], c[h + 1]);\n"
             "    a0[e] = u >= (double)%.17g ? %s : 0.f;\n", n->attr.f, cu_flt(1.0 / (1.0 - n->attr.f), keep, sizeof keep));
  else
    snprintf(body + w, sizeof body - (size_t)w,
             "    double u1 = lt_uniform(c[0], c[1]), u2 = lt_uniform(c[2], c[3]);\n"
             "    a0[e] = (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586476925 * u2));\n");
  return cu_per_element(r, 2, 0, body);
}

/* ---- the decode step ---- */

/* The cache with row pos replaced; in place (the plan aliases the result
 * to the cache), only the row is written. */
static int r_kv_write(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  int64_t T = n->shape.d[0], d = n->shape.d[1];
  const pl_buf *b = &r->p->buf[r->k->node];
  int inplace = b->kind == PL_BUF_ALIAS && b->idx == cu_opnode(r, 1);
  char body[640];
  snprintf(body, sizeof body,
           "    double pd = (double)a3[0];\n"
           "    if (!(pd >= 0.0 && pd < %lld.0)) { if (e == 0) lt_fail(status, %lld); continue; }\n"
           "    long long pos = (long long)pd;\n"
           "    %s\n",
           (long long)T, cu_code_of(r->k->node, 2),
           inplace ? "if (e < D) a0[pos * D + e] = a2[e];" : "a0[e] = e / D == pos ? a2[e % D] : a1[e];");
  char full[800];
  snprintf(full, sizeof full, "    const long long D = %lldLL;\n%s", (long long)d, body);
  if (!inplace) return cu_per_element(r, 4, 1, full);
  /* a thread per value of the row */
  cu_begin(r, EW);
  cu_params(r, 4);
  cu_status_param(r);
  cu_loop_open(&r->b, d);
  cu_sb_printf(&r->b, "%s  }\n}\n", full);
  cu_ref ops[5];
  cu_refs(r, ops, 4);
  ops[4].node = CU_REF_STATUS, ops[4].off = 0;
  return cu_end(r, cu_blocks(d, EW), EW, ops, 5);
}

/* A warp per head: the query against cache rows 0..pos, online softmax. */
static int r_attention_decode(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *kc = cu_opn(r, 2);
  /* the caches hold K = d / HD key/value heads (fewer than H for mha's
   * grouped heads): query head h reads cache head h / (H / K) */
  int64_t T = kc->shape.d[0], d = kc->shape.d[1], H = n->attr.heads, dq = ir_numel(&n->shape);
  if (H < 1 || dq % H) return cu_unsupported(r, "%lld heads do not divide width %lld", (long long)H, (long long)dq);
  int64_t HD = dq / H, NE = (HD + 31) / 32;
  if (d % HD || H % (d / HD)) return cu_unsupported(r, "cache width %lld is not a number of heads", (long long)d);
  int64_t G = H / (d / HD);
  if (NE > 8) return cu_unsupported(r, "a head width above 256");
  char sc[48];
  cu_flt(1.0 / sqrt((double)HD), sc, sizeof sc);
  cu_begin(r, 32);
  cu_params(r, 5);
  cu_status_param(r);
  cu_sb_printf(&r->b, ") {\n  const long long D = %lldLL, HD = %lldLL, G = %lldLL;\n  const int lane = threadIdx.x;\n"
                      "  double pd = (double)a4[0];\n"
                      "  if (!(pd >= 0.0 && pd < %lld.0)) { if (lane == 0 && blockIdx.x == 0) lt_fail(status, %lld); return; }\n"
                      "  long long pos = (long long)pd;\n"
                      "  for (long long h = blockIdx.x; h < %lldLL; h += gridDim.x) {\n"
                      "    float q[%lld], acc[%lld], m = -LT_INF, l = 0.f;\n"
                      "    for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; q[t] = e < HD ? a1[h * HD + e] : 0.f; acc[t] = 0.f; }\n"
                      "    for (long long j = 0; j <= pos; j++) {\n"
                      "      const auto* kr = a2 + j * D + h / G * HD; const auto* vr = a3 + j * D + h / G * HD;\n"
                      "      float s = 0.f;\n"
                      "      for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) s += q[t] * kr[e]; }\n"
                      "      s = lt_warp_sum(s) * %s;\n"
                      "      float mn = fmaxf(m, s), c = expf(m - mn), p = expf(s - mn);\n      l = l * c + p;\n"
                      "      for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) acc[t] = acc[t] * c + p * vr[e]; }\n"
                      "      m = mn;\n    }\n"
                      "    for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) a0[h * HD + e] = acc[t] / l; }\n"
                      "  }\n}\n",
               (long long)d, (long long)HD, (long long)G, (long long)T, cu_code_of(r->k->node, 2), (long long)H, (long long)NE,
               (long long)NE, (long long)NE, (long long)NE, sc, (long long)NE, (long long)NE);
  cu_ref ops[6];
  cu_refs(r, ops, 5);
  ops[5].node = CU_REF_STATUS, ops[5].off = 0;
  return cu_end(r, (unsigned)H, 32, ops, 6);
}

/* A reshape the plan could not alias (its result is a program output: a
 * data-parallel step's gradient unpacked from its bucket): a copy. */
static int r_reshape(cu_rctx *r) { return cu_per_element(r, 2, 0, "    a0[e] = a1[e];\n"); }

static const cu_render_fn by_op[IR_NOPS] = {
  [IR_RESHAPE] = r_reshape,
  [IR_ARGMAX] = r_argext,       [IR_ARGMIN] = r_argext,         [IR_CUMSUM] = r_cumsum,
  [IR_MAX_GRAD] = r_max_grad,   [IR_ONE_HOT] = r_one_hot,       [IR_GATHER] = r_gather,
  [IR_GATHER_GRAD] = r_gather_grad,
  [IR_NLL] = r_nll,             [IR_NLL_GRAD] = r_nll_grad,     [IR_KL_DIV] = r_kl_div,
  [IR_BCE_GRAD] = r_bce_grad,
  [IR_BATCHNORM] = r_norm,      [IR_BATCHNORM_TRAIN] = r_norm,  [IR_GROUPNORM] = r_norm, [IR_RMSNORM] = r_norm,
  [IR_NORM_GRAD] = r_norm_grad,
  [IR_RANDN] = r_random,        [IR_DROPOUT_MASK] = r_random,
  [IR_KV_WRITE] = r_kv_write,   [IR_ATTENTION_DECODE] = r_attention_decode,
  [IR_SAMPLE_TOKEN] = cu_render_sample,
};

cu_render_fn cu_misc_renderer(int op) { return op >= 0 && op < IR_NOPS ? by_op[op] : NULL; }
