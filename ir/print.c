/* print.c -- the text listing and the Graphviz view of a graph.
 *
 * Listing, one line per node:
 *   %3 = matmul(%0, %1) : f32[64, 256]  # h
 *   %4 = sum(%3) axis=1 keepdims=1 : f32[64, 1]
 *   %9 = matmul[ta](%2, %8) : f32[64, 10]
 * Leaves show their name (input, param) or value (const) in place of
 * operands. Attributes are printed when non-zero (a zero attribute is the
 * default, or readable from the shapes); cast shows its target dtype and
 * matmul its transpose flags after the name ([ta], [tb], [ta,tb]).
 * Then `output NAME = %ID` lines and `loss = %ID`.
 */
#include <stdio.h>
#include <string.h>

#include "ir.h"

#define SBUF 200

static const char *tstr(const ir_node *n, char *buf) {
  char tmp[SBUF];
  snprintf(buf, SBUF, "%s%s", ir_dtype_name(n->dtype), ir_shape_str(&n->shape, tmp, sizeof tmp));
  return buf;
}

/* Integer attributes in print order, with their names. */
#define INT_ATTRS(X) X(axis) X(k) X(stride) X(pad) X(pad_hi) X(start) X(end) X(heads) X(n)

static void print_attrs(const ir_node *n, FILE *f) {
  const ir_attr *a = &n->attr;
#define X(field) if (a->field) fprintf(f, " " #field "=%lld", (long long)a->field);
  INT_ATTRS(X)
#undef X
  if (n->op == IR_CAST) fprintf(f, " to=%s", ir_dtype_name((ir_dtype)a->i));
  else if (a->i && n->op != IR_MATMUL) fprintf(f, " i=%lld", (long long)a->i);
  if (a->keepdims) fprintf(f, " keepdims=%d", a->keepdims);
  if (a->causal) fprintf(f, " causal=%d", a->causal);
  if (a->approx) fprintf(f, " approx=%d", a->approx);
  if (a->f != 0) fprintf(f, " f=%.9g", a->f);
  if (a->f2 != 0) fprintf(f, " f2=%.9g", a->f2);
  if (a->nlist > 0 && a->nlist <= IR_MAXDIM) {
    fprintf(f, " list=[");
    for (int i = 0; i < a->nlist; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)a->list[i]);
    fprintf(f, "]");
  }
}

/* matmul's flags after its name: "[ta]", "[tb]", "[ta,tb]"; other bits
 * (which the verifier refuses) as a number. */
static void print_flags(const ir_node *n, FILE *f) {
  int64_t i = n->attr.i;
  if (n->op != IR_MATMUL || !i) return;
  if (i & ~(int64_t)(IR_MM_TA | IR_MM_TB)) fprintf(f, "[%lld]", (long long)i);
  else fprintf(f, "[%s%s%s]", i & IR_MM_TA ? "ta" : "", i == (IR_MM_TA | IR_MM_TB) ? "," : "",
               i & IR_MM_TB ? "tb" : "");
}

static void print_leaf(const ir_node *n, FILE *f) {
  if (n->op == IR_CONST && n->data)
    fprintf(f, "const <%lld values>", (long long)ir_numel(&n->shape));
  else if (n->op == IR_CONST)
    fprintf(f, "const %.9g", n->attr.f);
  else if (n->op == IR_ARANGE)
    fprintf(f, "arange n=%lld", (long long)n->attr.n);
  else
    fprintf(f, "%s %s", ir_ops[n->op].name, n->name ? n->name : "?");
}

static void print_node(const ir_graph *g, int id, FILE *f) {
  const ir_node *n = &g->nodes[id];
  char b[SBUF];
  fprintf(f, "%%%d = ", id);
  if (n->op < 0 || n->op >= IR_NOPS) {
    fprintf(f, "<bad op %d>\n", n->op);
    return;
  }
  int leaf = ir_ops[n->op].cat == IR_CAT_LEAF;
  if (leaf) {
    print_leaf(n, f);
  } else {
    fprintf(f, "%s", ir_ops[n->op].name);
    print_flags(n, f);
    fprintf(f, "(");
    for (int k = 0; k < n->nin; k++) fprintf(f, "%s%%%d", k ? ", " : "", n->in[k]);
    fprintf(f, ")");
    print_attrs(n, f);
    ir_fusion_print(n->fusion, f);
  }
  fprintf(f, " : %s", tstr(n, b));
  if (!leaf && n->name) fprintf(f, "  # %s", n->name);
  const ir_param *p = n->op == IR_PARAM && n->attr.i >= 0 && n->attr.i < g->nparams ? &g->params[n->attr.i] : NULL;
  if (p && p->from_quant) /* passes/quantize.c kept the layer f32: the weight is made at load */
    fprintf(f, "  # kept f32, dequantized at load: %s", p->kept_why ? p->kept_why : "?");
  fputc('\n', f);
}

void ir_print(const ir_graph *g, FILE *f) {
  fprintf(f, "model %s\n", g->model_name ? g->model_name : "?");
  for (int id = 0; id < g->nnodes; id++) print_node(g, id, f);
  for (int i = 0; i < g->noutputs; i++)
    fprintf(f, "output %s = %%%d\n", g->outputs[i].name ? g->outputs[i].name : "?", g->outputs[i].node);
  if (g->loss >= 0) fprintf(f, "loss = %%%d\n", g->loss);
}

/* ---- Graphviz ---- */

/* A DOT string body: quotes and backslashes escaped. */
static void dot_str(const char *s, FILE *f) {
  for (; s && *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
}

/* Inputs are blue ellipses, parameters yellow rounded boxes, constants grey
 * notes, the loss red; everything else a plain box. */
static const char *dot_style(const ir_graph *g, int id) {
  const ir_node *n = &g->nodes[id];
  if (n->op == IR_INPUT) return "shape=ellipse, style=filled, fillcolor=\"#cfe2ff\"";
  if (n->op == IR_PARAM) return "shape=box, style=\"rounded,filled\", fillcolor=\"#fff3cd\"";
  if (n->op == IR_CONST || n->op == IR_ARANGE) return "shape=note, style=filled, fillcolor=\"#e9ecef\"";
  if (id == g->loss) return "shape=box, style=filled, fillcolor=\"#f8d7da\"";
  return "shape=box";
}

void ir_dot(const ir_graph *g, FILE *f) {
  char b[SBUF];
  fprintf(f, "digraph \"");
  dot_str(g->model_name, f);
  fprintf(f, "\" {\n  node [fontname=\"Helvetica\", fontsize=10];\n");
  for (int id = 0; id < g->nnodes; id++) {
    const ir_node *n = &g->nodes[id];
    const char *op = n->op >= 0 && n->op < IR_NOPS ? ir_ops[n->op].name : "?";
    fprintf(f, "  n%d [%s, label=\"%%%d %s", id, dot_style(g, id), id, op);
    print_flags(n, f);
    fprintf(f, "\\n%s", tstr(n, b));
    if (n->name) {
      fprintf(f, "\\n");
      dot_str(n->name, f);
    }
    fprintf(f, "\"];\n");
    for (int k = 0; k < n->nin; k++) fprintf(f, "  n%d -> n%d;\n", n->in[k], id);
  }
  for (int i = 0; i < g->noutputs; i++) {
    fprintf(f, "  out%d [shape=plaintext, label=\"output ", i);
    dot_str(g->outputs[i].name, f);
    fprintf(f, "\"];\n  n%d -> out%d;\n", g->outputs[i].node, i);
  }
  fprintf(f, "}\n");
}
