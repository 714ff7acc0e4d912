/* stats.c -- forward FLOPs and bytes per node, graph totals, and the
 * `lathe check` summary table. FLOPs count a multiply-add as 2; elementwise
 * ops (transcendentals included) count 1 per element, reductions 1 per input
 * element, data movement 0. All arithmetic saturates at INT64_MAX instead of
 * overflowing: the counts are for people, not for allocation. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

static int64_t smul(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
static int64_t sadd(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}
static int64_t smul3(int64_t a, int64_t b, int64_t c) { return smul(smul(a, b), c); }

static int64_t numel(const ir_node *n) {
  int64_t e = ir_numel(&n->shape);
  return e < 0 ? 0 : e;
}

static const ir_node *arg(const ir_graph *g, const ir_node *n, int k) { return &g->nodes[n->in[k]]; }

/* conv: 2*(C/groups)*taps per output element, plus the bias add (w is
 * [O, C/groups, KH, KW] or [O, C/groups, K]) */
static int64_t conv_flops(const ir_graph *g, const ir_node *n) {
  const ir_shape *w = &arg(g, n, 1)->shape;
  int64_t taps = 1;
  for (int i = 2; i < w->rank; i++) taps = smul(taps, w->d[i]);
  int64_t out = numel(n), f = smul(out, smul3(2, w->d[1], taps));
  return n->nin == 3 ? sadd(f, out) : f;
}

/* qkv projection, Q K^T over all heads, softmax, A V, output projection
 * (x [B, T, d]: attention_save's result is a flat pack) */
static int64_t attention_flops(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &arg(g, n, 0)->shape;
  int64_t B = x->d[0], T = x->d[1], d = x->d[2], heads = n->attr.heads;
  int64_t bt = smul(B, T);
  int64_t qkv = sadd(smul3(2, bt, smul(d, 3 * d)), smul(bt, 3 * d));
  int64_t scores = smul3(2, smul(bt, T), d);
  int64_t softmax = smul3(bt, T, heads > 0 ? heads : 1);
  int64_t proj = sadd(smul3(2, bt, smul(d, d)), smul(bt, d));
  return sadd(sadd(qkv, scores), sadd(sadd(softmax, scores), proj));
}

/* mha: the q and kv projections, Q K^T and P V over every head (before
 * masking: the mask is data), softmax, the output projection */
static int64_t mha_flops(const ir_graph *g, const ir_node *n) {
  const ir_shape *x = &arg(g, n, 0)->shape, *c = &arg(g, n, 3)->shape, *kv = &arg(g, n, 4)->shape;
  int64_t bq = smul(x->d[0], x->d[1]), bk = smul(c->d[0], c->d[1]), d = x->d[2];
  int64_t e = arg(g, n, 1)->shape.d[1]; /* the inner width: d, or heads x head_dim */
  int64_t proj = sadd(smul3(4, bq, smul(d, e)), smul3(2, bk, smul(kv->d[0], kv->d[1]))); /* q and output, kv */
  int64_t scores = smul3(2, smul(bq, c->d[1]), e);                                      /* Q K^T, and P V */
  return sadd(sadd(proj, smul(scores, 2)), smul3(bq, c->d[1], n->attr.heads));
}

/* per step: x W_ih and h W_hh (G gates each), bias adds, one op per gate
 * output for the nonlinearity/update; times T steps */
static int64_t recurrent_flops(const ir_graph *g, const ir_node *n, int64_t gates) {
  int64_t B = n->shape.d[0], T = n->shape.d[1], h = n->shape.d[2];
  int64_t in = arg(g, n, 0)->shape.d[2], gh = smul(gates, h);
  int64_t step = sadd(smul3(2, B, smul(in, gh)), smul3(2, B, smul(h, gh)));
  step = sadd(step, smul3(2, B, gh));
  return smul(step, T);
}

int64_t ir_node_flops(const ir_graph *g, int node) {
  if (node < 0 || node >= g->nnodes) return 0;
  const ir_node *n = &g->nodes[node];
  switch (n->op) { /* the ops whose cost is not their category's */
    case IR_MATMUL: {
      const ir_shape *a = &arg(g, n, 0)->shape;
      return smul3(2, numel(n), a->d[a->rank - 1 - ((n->attr.i & IR_MM_TA) != 0)]);
    }
    case IR_CONV2D: return conv_flops(g, n);
    case IR_MAXPOOL2D:
    case IR_AVGPOOL2D: return smul3(numel(n), n->attr.k, n->shape.rank == 4 ? n->attr.k : 1);
    case IR_ATTENTION: case IR_ATTENTION_SAVE: return attention_flops(g, n);
    case IR_MHA: return mha_flops(g, n);
    case IR_RNN: return recurrent_flops(g, n, 1);
    case IR_LSTM: return recurrent_flops(g, n, 4);
    case IR_GRU: return recurrent_flops(g, n, 3);
    case IR_FUSED: return smul(numel(n), n->fusion ? n->fusion->nsteps : 0); /* one per step, as unfused */
    default: break;
  }
  switch (ir_ops[n->op].cat) {
    case IR_CAT_UNARY:
    case IR_CAT_BINARY:
    case IR_CAT_SELECT: return numel(n);
    case IR_CAT_REDUCE:
    case IR_CAT_LOSS: return numel(arg(g, n, 0));
    default: return 0; /* leaves, data movement */
  }
}

int64_t ir_node_bytes(const ir_graph *g, int node) {
  if (node < 0 || node >= g->nnodes) return 0;
  const ir_node *n = &g->nodes[node];
  return smul(numel(n), (int64_t)ir_dtype_size(n->dtype));
}

void ir_graph_stats(const ir_graph *g, ir_stats *st) {
  memset(st, 0, sizeof *st);
  for (int i = 0; i < g->nparams; i++) {
    int64_t e = ir_numel(&g->params[i].shape);
    if (e < 0) continue;
    st->params = sadd(st->params, e);
    st->param_bytes = sadd(st->param_bytes, smul(e, (int64_t)ir_dtype_size(g->params[i].dtype)));
  }
  for (int id = 0; id < g->nnodes; id++) {
    const ir_node *n = &g->nodes[id];
    if (n->op == IR_INPUT) st->input_bytes = sadd(st->input_bytes, ir_node_bytes(g, id));
    else if (ir_ops[n->op].cat != IR_CAT_LEAF)
      st->activation_bytes = sadd(st->activation_bytes, ir_node_bytes(g, id));
    st->flops = sadd(st->flops, ir_node_flops(g, id));
  }
}

/* ---- human units ---- */

/* "512 FLOP", "1.23 MFLOP" (decimal prefixes) */
static const char *human_flops(int64_t v, char *buf, size_t n) {
  static const char *pre[] = {"", "K", "M", "G", "T", "P", "E"};
  double x = (double)v;
  int i = 0;
  if (v < 1000) {
    snprintf(buf, n, "%lld FLOP", (long long)v);
    return buf;
  }
  while (x >= 1000 && i < 6) x /= 1000, i++;
  snprintf(buf, n, "%.2f %sFLOP", x, pre[i]);
  return buf;
}

/* "100 B", "4.5 MiB" (binary prefixes) */
static const char *human_bytes(int64_t v, char *buf, size_t n) {
  static const char *pre[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double x = (double)v;
  int i = 0;
  if (v < 1024) {
    snprintf(buf, n, "%lld B", (long long)v);
    return buf;
  }
  while (x >= 1024 && i < 6) x /= 1024, i++;
  snprintf(buf, n, "%.1f %s", x, pre[i]);
  return buf;
}

void ir_summary(const ir_graph *g, FILE *f) {
  char s[200], t[240], h[40];
  int nleaves = 0;
  fprintf(f, "model %s\n", g->model_name ? g->model_name : "?");
  fprintf(f, "%5s  %-14s %-24s %-24s %14s\n", "id", "op", "type", "name", "FLOPs");
  for (int id = 0; id < g->nnodes; id++) {
    const ir_node *n = &g->nodes[id];
    snprintf(t, sizeof t, "%s%s", ir_dtype_name(n->dtype), ir_shape_str(&n->shape, s, sizeof s));
    int leaf = ir_ops[n->op].cat == IR_CAT_LEAF;
    nleaves += leaf;
    fprintf(f, "%5d  %-14s %-24s %-24s %14s\n", id, ir_ops[n->op].name, t, n->name ? n->name : "",
            leaf ? "-" : human_flops(ir_node_flops(g, id), h, sizeof h));
  }
  ir_stats st;
  ir_graph_stats(g, &st);
  fprintf(f, "nodes:       %d (%d leaves, %d ops)\n", g->nnodes, nleaves, g->nnodes - nleaves);
  fprintf(f, "parameters:  %lld in %d tensors (%s)\n", (long long)st.params, g->nparams,
          human_bytes(st.param_bytes, h, sizeof h));
  fprintf(f, "inputs:      %s\n", human_bytes(st.input_bytes, h, sizeof h));
  fprintf(f, "activations: %s\n", human_bytes(st.activation_bytes, h, sizeof h));
  fprintf(f, "forward:     %s\n", human_flops(st.flops, h, sizeof h));
}
