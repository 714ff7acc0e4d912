/* test_shapes.c -- the IR core: every op's shape rule (a good and a bad case
 * each, exact messages), broadcasting corners, size overflow, ir_add's own
 * checks, the verifier, the printer, FLOP counts and the Philox RNG. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "test.h"

/* known-answer entry point, defined in ir/rng.c */
void ir_philox4x32_10(uint32_t ctr[4], const uint32_t key[2]);

static arena A;
static ir_graph G;
static char msg[512];
static const ir_loc NOLOC = {0};

static void reset(void) {
  ar_free(&A);
  ar_init(&A);
  ir_graph_init(&G, &A, "t");
}

/* "f32[2, 3]" -> dtype and shape; "i32[]" is a scalar */
static void parse_type(const char *s, ir_dtype *t, ir_shape *sh) {
  char name[8] = {0};
  size_t k = strcspn(s, "[");
  memcpy(name, s, k < 7 ? k : 7);
  if (ir_dtype_parse(name, t)) abort();
  memset(sh, 0, sizeof *sh);
  const char *p = s + k + 1;
  while (*p && *p != ']') {
    char *end;
    sh->d[sh->rank++] = strtoll(p, &end, 10);
    p = end;
    while (*p == ',' || *p == ' ') p++;
  }
}

/* a fresh input of the given type */
static int T(const char *type) {
  ir_dtype t;
  ir_shape s;
  char name[16];
  parse_type(type, &t, &s);
  snprintf(name, sizeof name, "x%d", G.ninputs);
  return ir_add_input(&G, name, t, &s, 0, NOLOC);
}

static int add_(int op, const ir_attr *a, const int *in, int nin) {
  msg[0] = '\0';
  return ir_add(&G, op, in, nin, a, NOLOC, msg, sizeof msg);
}
#define ADD(op, attr, ...) \
  add_(op, attr, (int[]){__VA_ARGS__}, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))

static const char *type_of(int id) {
  static char buf[256];
  char s[200];
  if (id < 0 || id >= G.nnodes) return msg;
  snprintf(buf, sizeof buf, "%s%s", ir_dtype_name(G.nodes[id].dtype),
           ir_shape_str(&G.nodes[id].shape, s, sizeof s));
  return buf;
}

#define OK(id, type) do { int id_ = (id); CHECK_MSG(id_ >= 0, "ir_add failed: %s", msg); \
                          if (id_ >= 0) CHECK_STR(type_of(id_), type); } while (0)
#define BAD(id, text) do { int id_ = (id); CHECK(id_ == -1); CHECK_STR(msg, text); } while (0)

/* ---- leaves and ir_add's own checks ---- */

static void test_leaves(void) {
  reset();
  ir_attr a = {.n = 5};
  BAD(ADD(IR_ARANGE, &a, 0), "arange: expects 0 inputs, got 1");
  OK(add_(IR_ARANGE, &a, NULL, 0), "i32[5]");
  a.n = 0;
  BAD(add_(IR_ARANGE, &a, NULL, 0), "arange: length must be >= 1, got 0");
  BAD(add_(IR_INPUT, NULL, NULL, 0), "input: leaves are created with ir_add_input");
  OK(ir_add_const(&G, IR_F32, 0.5, NOLOC), "f32[]");
  CHECK(G.nodes[G.nnodes - 1].attr.f == 0.5);
  int x = T("f16[3, 4]");
  OK(x, "f16[3, 4]");
  CHECK(ir_find_input(&G, "x0") == 0 && ir_find_input(&G, "nope") == -1);
  ir_shape s = {.rank = 2, .d = {3, 4}};
  int w = ir_add_param(&G, "fc.weight", IR_F32, &s, IR_INIT_XAVIER, 0, 3, 4, NOLOC);
  OK(w, "f32[3, 4]");
  CHECK(ir_find_param(&G, "fc.weight") == 0 && G.params[0].node == w);
  ir_add_output(&G, "out", w);
  CHECK(ir_find_output(&G, "out") == 0 && ir_find_output(&G, "x") == -1);
  /* invalid leaf shapes are refused */
  ir_shape zero = {.rank = 2, .d = {3, 0}}, huge = {.rank = 3, .d = {1 << 20, 1 << 20, 2}};
  ir_shape deep = {.rank = 9};
  CHECK(ir_add_input(&G, "z", IR_F32, &zero, 0, NOLOC) == -1);
  CHECK(ir_add_input(&G, "h", IR_F32, &huge, 0, NOLOC) == -1);
  CHECK(ir_add_param(&G, "d", IR_F32, &deep, IR_INIT_ZEROS, 0, 0, 0, NOLOC) == -1);
  ir_shape limit = {.rank = 2, .d = {1 << 20, 1 << 20}}; /* exactly 2^40 */
  CHECK(ir_add_input(&G, "l", IR_U8, &limit, 0, NOLOC) >= 0);
}

static void test_add_checks(void) {
  reset();
  int a = T("f32[2, 3]"), b = T("f32[3, 4]");
  BAD(ADD(IR_MATMUL, NULL, a, b, b), "matmul: expects 2 inputs, got 3");
  BAD(ADD(IR_RELU, NULL, a, b), "relu: expects 1 input, got 2");
  BAD(add_(IR_CONCAT, NULL, NULL, 0), "concat: expects at least 1 input, got 0");
  BAD(ADD(IR_CONV2D, NULL, a), "conv2d: expects 2 or 3 inputs, got 1");
  BAD(ADD(IR_MATMUL, NULL, a, 99), "matmul: input 1 refers to node 99, which does not exist (graph has 2)");
  BAD(ADD(IR_MATMUL, NULL, -1, a), "matmul: input 0 refers to node -1, which does not exist (graph has 2)");
  char want[64];
  snprintf(want, sizeof want, "ir_add: unknown op %d", (int)IR_NOPS);
  BAD(ADD(IR_NOPS, NULL, a), want);
  CHECK(G.nnodes == 2); /* nothing was added */
  CHECK(ir_op_lookup("matmul") == IR_MATMUL && ir_op_lookup("nope") == -1);
  CHECK(strcmp(ir_ops[IR_CROSS_ENTROPY].name, "cross_entropy") == 0);
}

/* ---- elementwise ---- */

static void test_unary(void) {
  reset();
  int f = T("f32[2, 3]"), h = T("bf16[4]"), i = T("i32[2, 3]"), bl = T("bool[4]");
  char want[128];
  for (int op = 0; op < IR_NOPS; op++) {
    if (ir_ops[op].cat != IR_CAT_UNARY || op == IR_CAST || op == IR_ABS || op == IR_NEG) continue;
    OK(ADD(op, NULL, f), "f32[2, 3]");
    OK(ADD(op, NULL, h), "bf16[4]");
    snprintf(want, sizeof want, "%s: input must be floating-point, got i32[2, 3]", ir_ops[op].name);
    BAD(ADD(op, NULL, i), want);
  }
  ir_attr p = {.f = 1.0};
  BAD(ADD(IR_DROPOUT, &p, f), "dropout: p must be in [0, 1), got 1");
  OK(ADD(IR_ABS, NULL, i), "i32[2, 3]");
  OK(ADD(IR_NEG, NULL, f), "f32[2, 3]");
  BAD(ADD(IR_ABS, NULL, bl), "abs: input must be numeric, got bool[4]");
  BAD(ADD(IR_NEG, NULL, bl), "neg: input must be numeric, got bool[4]");
  ir_attr c = {.i = IR_I64};
  OK(ADD(IR_CAST, &c, f), "i64[2, 3]");
  c.i = IR_NDTYPES;
  BAD(ADD(IR_CAST, &c, f), "cast: unknown target dtype 8");
}

static void test_binary(void) {
  reset();
  int a = T("f32[2, 1, 3]"), b = T("f32[4, 1]"), s = T("f32[]"), v = T("f32[3]"), i = T("i32[3]");
  int one = T("f32[1]"), c = T("f32[3, 1]"), r = T("f32[1, 3]"), w = T("f32[5]");
  for (int op = IR_ADD; op <= IR_DIV; op++) {
    OK(ADD(op, NULL, a, b), "f32[2, 4, 3]");
    char want[128];
    snprintf(want, sizeof want, "%s: shapes do not broadcast: [3] and [5]", ir_ops[op].name);
    BAD(ADD(op, NULL, v, w), want);
  }
  OK(ADD(IR_ADD, NULL, s, v), "f32[3]");
  OK(ADD(IR_MUL, NULL, v, s), "f32[3]");
  OK(ADD(IR_ADD, NULL, s, s), "f32[]");
  OK(ADD(IR_ADD, NULL, one, s), "f32[1]");
  OK(ADD(IR_SUB, NULL, c, r), "f32[3, 3]");
  OK(ADD(IR_SUB, NULL, one, a), "f32[2, 1, 3]");
  BAD(ADD(IR_ADD, NULL, v, i), "add: dtypes differ: f32 vs i32");
  BAD(ADD(IR_ADD, NULL, a, T("f32[3, 2]")), "add: shapes do not broadcast: [2, 1, 3] and [3, 2]");
  /* comparisons: the broadcast shape, bool */
  for (int op = IR_LESS; op <= IR_NOT_EQUAL; op++) {
    OK(ADD(op, NULL, a, b), "bool[2, 4, 3]");
    OK(ADD(op, NULL, i, i), "bool[3]");
    char want[128];
    snprintf(want, sizeof want, "%s: dtypes differ: f32 vs i32", ir_ops[op].name);
    BAD(ADD(op, NULL, v, i), want);
  }
  /* argmax / argmin: the reduction's shape, i32 */
  int x3 = T("f32[2, 3, 4]");
  ir_attr a1 = {.axis = 1}, all = {.axis = -1, .keepdims = 1};
  OK(ADD(IR_ARGMAX, &a1, x3), "i32[2, 4]");
  OK(ADD(IR_ARGMIN, &all, x3), "i32[1, 1, 1]");
  BAD(ADD(IR_ARGMAX, &a1, T("bool[2, 3]")), "argmax: input must be numeric, got bool[2, 3]");
  /* where: bool condition, one dtype for a and b, all three broadcast */
  int cb = T("bool[4, 1]");
  OK(ADD(IR_WHERE, NULL, cb, v, s), "f32[4, 3]");
  OK(ADD(IR_WHERE, NULL, cb, s, s), "f32[4, 1]");
  BAD(ADD(IR_WHERE, NULL, v, v, v), "where: condition must be bool, got f32");
  BAD(ADD(IR_WHERE, NULL, cb, v, i), "where: dtypes differ: f32 vs i32");
  BAD(ADD(IR_WHERE, NULL, cb, v, w), "where: shapes do not broadcast: [4, 1], [3] and [5]");
  /* broadcast helper directly */
  ir_shape x = {.rank = 8, .d = {1, 2, 1, 2, 1, 2, 1, 2}}, y = {.rank = 3, .d = {3, 1, 5}}, o;
  char buf[200];
  CHECK(ir_broadcast(&x, &y, &o) == -1); /* 2 vs 5 in the last place */
  ir_shape y4 = {.rank = 4, .d = {3, 1, 1, 2}};
  CHECK(ir_broadcast(&x, &y4, &o) == 0);
  CHECK_STR(ir_shape_str(&o, buf, sizeof buf), "[1, 2, 1, 2, 3, 2, 1, 2]");
  CHECK(ir_broadcast(&y4, &x, &o) == 0 && o.rank == 8 && o.d[4] == 3);
  /* each operand fits, the product does not */
  int big1 = T("u8[1048576, 1]"), big2 = T("u8[1, 1048576]"), big3 = T("u8[2, 1, 1]");
  int sq = ADD(IR_ADD, NULL, big1, big2);
  OK(sq, "u8[1048576, 1048576]");
  BAD(ADD(IR_ADD, NULL, big3, sq), "add: result [2, 1048576, 1048576] has more than 1099511627776 elements");
}

/* ---- contractions ---- */

static void test_matmul(void) {
  reset();
  int a = T("f32[2, 3]"), b = T("f32[3, 4]"), v3 = T("f32[3]"), c = T("f32[4, 5]");
  int ba = T("f32[5, 1, 2, 3]"), bb = T("f32[4, 3, 6]"), i = T("i32[2, 3]"), s = T("f32[]");
  OK(ADD(IR_MATMUL, NULL, a, b), "f32[2, 4]");
  OK(ADD(IR_MATMUL, NULL, v3, b), "f32[4]");
  OK(ADD(IR_MATMUL, NULL, a, v3), "f32[2]");
  OK(ADD(IR_MATMUL, NULL, v3, v3), "f32[]");
  OK(ADD(IR_MATMUL, NULL, ba, bb), "f32[5, 4, 2, 6]");
  OK(ADD(IR_MATMUL, NULL, ba, b), "f32[5, 1, 2, 4]");
  BAD(ADD(IR_MATMUL, NULL, a, c), "matmul: inner dimensions differ: [2, 3] @ [4, 5] (3 vs 4)");
  BAD(ADD(IR_MATMUL, NULL, T("f32[2, 2, 3]"), T("f32[3, 3, 4]")),
      "matmul: batch dimensions do not broadcast: [2, 2, 3] @ [3, 3, 4]");
  BAD(ADD(IR_MATMUL, NULL, s, v3), "matmul: operands must have rank >= 1, got [] @ [3]");
  BAD(ADD(IR_MATMUL, NULL, i, b), "matmul: left operand must be floating-point, got i32[2, 3]");
  BAD(ADD(IR_MATMUL, NULL, a, T("f16[3, 4]")), "matmul: dtypes differ: f32 vs f16");
  /* transpose flags (attr.i, made by simplify): a flagged operand's last
   * two axes are swapped before the rule above */
  ir_attr fa = {.i = 1}, fb = {.i = 2}, fab = {.i = 3}, f4 = {.i = 4};
  int at = T("f32[3, 2]"), bt = T("f32[4, 3]");
  OK(ADD(IR_MATMUL, &fa, at, b), "f32[2, 4]");
  OK(ADD(IR_MATMUL, &fb, a, bt), "f32[2, 4]");
  OK(ADD(IR_MATMUL, &fab, at, bt), "f32[2, 4]");
  OK(ADD(IR_MATMUL, &fb, v3, bt), "f32[4]");
  OK(ADD(IR_MATMUL, &fa, at, v3), "f32[2]");
  OK(ADD(IR_MATMUL, &fa, T("f32[5, 1, 3, 2]"), bb), "f32[5, 4, 2, 6]");
  OK(ADD(IR_MATMUL, &fb, ba, T("f32[4, 6, 3]")), "f32[5, 4, 2, 6]");
  BAD(ADD(IR_MATMUL, &fa, a, b), "matmul: inner dimensions differ: [2, 3]^T @ [3, 4] (2 vs 3)");
  BAD(ADD(IR_MATMUL, &fb, a, b), "matmul: inner dimensions differ: [2, 3] @ [3, 4]^T (3 vs 4)");
  BAD(ADD(IR_MATMUL, &fab, T("f32[2, 3, 2]"), T("f32[3, 4, 3]")),
      "matmul: batch dimensions do not broadcast: [2, 3, 2]^T @ [3, 4, 3]^T");
  BAD(ADD(IR_MATMUL, &fa, v3, b), "matmul: a transposed left operand needs rank >= 2, got [3]");
  BAD(ADD(IR_MATMUL, &fb, a, v3), "matmul: a transposed right operand needs rank >= 2, got [3]");
  BAD(ADD(IR_MATMUL, &f4, a, b), "matmul: unknown flags 4 (1 = transpose a, 2 = transpose b)");
}

static void test_conv(void) {
  reset();
  int x = T("f32[2, 3, 8, 8]"), w = T("f32[4, 3, 3, 3]"), b = T("f32[4]");
  ir_attr a = {.stride = 1, .pad = 1, .pad_hi = 1};
  int y = ADD(IR_CONV2D, &a, x, w, b);
  OK(y, "f32[2, 4, 8, 8]");
  CHECK(ir_node_flops(&G, y) == 2LL * 2 * 4 * 8 * 8 * 3 * 3 * 3 + 2 * 4 * 8 * 8);
  ir_attr s2 = {.stride = 2};
  OK(ADD(IR_CONV2D, &s2, x, w), "f32[2, 4, 3, 3]");
  ir_attr same_even = {.stride = 1, .pad = 0, .pad_hi = 1}; /* "same" for k = 2 */
  OK(ADD(IR_CONV2D, &same_even, x, T("f32[5, 3, 2, 2]")), "f32[2, 5, 8, 8]");
  BAD(ADD(IR_CONV2D, &a, x, T("f32[4, 2, 3, 3]")),
      "conv2d: channels differ: input [2, 3, 8, 8] has 3, weight [4, 2, 3, 3] expects 2");
  BAD(ADD(IR_CONV2D, &a, x, w, T("f32[3]")), "conv2d: bias must be [4], got [3]");
  BAD(ADD(IR_CONV2D, &a, T("f32[8, 8]"), w),
      "conv2d: input must be rank 4 [N, C, H, W] or rank 3 [N, C, L], got [8, 8]");
  BAD(ADD(IR_CONV2D, &a, T("f32[2, 3, 8]"), w), "conv2d: weight must be rank 3 [O, C/groups, k], got [4, 3, 3, 3]");
  OK(ADD(IR_CONV2D, &a, x, T("f32[4, 3, 3, 2]")), "f32[2, 4, 8, 9]"); /* a rectangular kernel */
  /* 1-d: [N, C, L] with [O, C/groups, k]; dilation (n) and groups (k) */
  ir_attr d1 = {.stride = 2, .pad = 1, .pad_hi = 1, .n = 2, .k = 3};
  int y1 = ADD(IR_CONV2D, &d1, T("f32[2, 6, 11]"), T("f32[9, 2, 3]"), T("f32[9]"));
  OK(y1, "f32[2, 9, 5]"); /* (11 + 2 - 2*2 - 1) / 2 + 1 */
  CHECK(ir_node_flops(&G, y1) == 2LL * 2 * 9 * 5 * 2 * 3 + 2 * 9 * 5);
  ir_attr dw = {.stride = 1, .pad = 2, .pad_hi = 2, .n = 2, .k = 3}; /* depthwise, dilated, "same" */
  OK(ADD(IR_CONV2D, &dw, x, T("f32[3, 1, 3, 3]")), "f32[2, 3, 8, 8]");
  BAD(ADD(IR_CONV2D, &dw, x, T("f32[4, 1, 3, 3]")),
      "conv2d: groups 3 must divide the input channels 3 and the output channels 4");
  BAD(ADD(IR_CONV2D, &dw, x, T("f32[3, 3, 3, 3]")),
      "conv2d: channels differ: input [2, 3, 8, 8] has 3 (per group: C/groups), weight [3, 3, 3, 3] expects 9");
  ir_attr far = {.stride = 1, .n = 5};
  BAD(ADD(IR_CONV2D, &far, T("f32[1, 3, 8]"), T("f32[4, 3, 3]")),
      "conv2d: kernel 3 (dilated) does not fit input length 8 padded by 0+0");
  BAD(ADD(IR_CONV2D, &s2, x, T("f32[4, 3, 9, 9]")), "conv2d: kernel 9 does not fit input 8x8 padded by 0+0");
  ir_attr z = {.stride = 0};
  BAD(ADD(IR_CONV2D, &z, x, w), "conv2d: stride must be >= 1, got 0");
  ir_attr neg = {.stride = 1, .pad = -1};
  BAD(ADD(IR_CONV2D, &neg, x, w), "conv2d: padding must be >= 0, got -1 and 0");
  ir_attr huge = {.stride = 1, .pad = INT64_MAX, .pad_hi = INT64_MAX};
  BAD(ADD(IR_CONV2D, &huge, x, w),
      "conv2d: kernel 3 does not fit input 8x8 padded by 9223372036854775807+9223372036854775807");
  BAD(ADD(IR_CONV2D, &a, x, T("f16[4, 3, 3, 3]")), "conv2d: dtypes differ: f32 vs f16");
}

/* ---- reductions ---- */

static void test_reduce(void) {
  reset();
  int x = T("f32[2, 3, 4]"), i = T("i32[2, 3]");
  for (int op = IR_SUM; op <= IR_MIN; op++) {
    ir_attr a = {.axis = 1};
    OK(ADD(op, &a, x), "f32[2, 4]");
    a.keepdims = 1;
    OK(ADD(op, &a, x), "f32[2, 1, 4]");
    ir_attr all = {.axis = -1};
    OK(ADD(op, &all, x), "f32[]");
    all.keepdims = 1;
    OK(ADD(op, &all, x), "f32[1, 1, 1]");
    ir_attr bad = {.axis = 3};
    char want[128];
    snprintf(want, sizeof want, "%s: axis 3 out of range for rank 3", ir_ops[op].name);
    BAD(ADD(op, &bad, x), want);
  }
  ir_attr a0 = {.axis = 0};
  OK(ADD(IR_SUM, &a0, i), "i32[3]");
  BAD(ADD(IR_MEAN, &a0, i), "mean: input must be floating-point, got i32[2, 3]");
  ir_attr ax = {.axis = 2};
  OK(ADD(IR_SOFTMAX, &ax, x), "f32[2, 3, 4]");
  OK(ADD(IR_LOG_SOFTMAX, &a0, x), "f32[2, 3, 4]");
  ir_attr ax3 = {.axis = 3};
  BAD(ADD(IR_SOFTMAX, &ax3, x), "softmax: axis 3 out of range for rank 3");
  BAD(ADD(IR_LOG_SOFTMAX, &a0, i), "log_softmax: input must be floating-point, got i32[2, 3]");
}

static void test_layernorm_pool(void) {
  reset();
  int x = T("f32[2, 5, 8]"), w = T("f32[8]"), b = T("f32[8]"), w7 = T("f32[7]");
  ir_attr eps = {.f = 1e-5};
  OK(ADD(IR_LAYERNORM, &eps, x, w, b), "f32[2, 5, 8]");
  BAD(ADD(IR_LAYERNORM, &eps, x, w7, b), "layernorm: weight must be [8], got [7]");
  BAD(ADD(IR_LAYERNORM, &eps, x, w, T("f16[8]")), "layernorm: bias must be f32, got f16");
  BAD(ADD(IR_LAYERNORM, &eps, T("f32[]"), w, b), "layernorm: input must have rank >= 1, got f32[]");
  int im = T("f32[1, 2, 8, 7]");
  for (int op = IR_MAXPOOL2D; op <= IR_AVGPOOL2D; op++) {
    ir_attr p = {.k = 2, .stride = 2};
    OK(ADD(op, &p, im), "f32[1, 2, 4, 3]");
    ir_attr p3 = {.k = 3, .stride = 1};
    OK(ADD(op, &p3, im), "f32[1, 2, 6, 5]");
    char want[128];
    ir_attr big = {.k = 8, .stride = 1};
    snprintf(want, sizeof want, "%s: kernel 8 does not fit input 8x7", ir_ops[op].name);
    BAD(ADD(op, &big, im), want);
    OK(ADD(op, &p, x), "f32[2, 5, 4]"); /* 1-d: [N, C, L] */
    OK(ADD(op, &p3, x), "f32[2, 5, 6]");
    snprintf(want, sizeof want, "%s: kernel 9 does not fit input length 8", ir_ops[op].name);
    ir_attr k9 = {.k = 9, .stride = 1};
    BAD(ADD(op, &k9, x), want);
    snprintf(want, sizeof want, "%s: input must be rank 4 [N, C, H, W] or rank 3 [N, C, L], got [5, 8]",
             ir_ops[op].name);
    BAD(ADD(op, &p, T("f32[5, 8]")), want);
    ir_attr z = {.k = 2, .stride = 0};
    snprintf(want, sizeof want, "%s: kernel and stride must be >= 1, got 2 and 0", ir_ops[op].name);
    BAD(ADD(op, &z, im), want);
  }
}

/* ---- data movement ---- */

static void test_movement(void) {
  reset();
  int x = T("f32[2, 3, 4]");
  ir_attr r = {.nlist = 2, .list = {6, 4}};
  OK(ADD(IR_RESHAPE, &r, x), "f32[6, 4]");
  ir_attr r0 = {.nlist = 4, .list = {1, 24, 1, 1}};
  OK(ADD(IR_RESHAPE, &r0, x), "f32[1, 24, 1, 1]");
  ir_attr rb = {.nlist = 2, .list = {4, 2}};
  BAD(ADD(IR_RESHAPE, &rb, x), "reshape: cannot reshape [2, 3, 4] (24 elements) into [4, 2] (8 elements)");
  ir_attr rh = {.nlist = 3, .list = {INT64_MAX, INT64_MAX, 2}};
  BAD(ADD(IR_RESHAPE, &rh, x), "reshape: invalid target shape [9223372036854775807, 9223372036854775807, 2]");
  ir_attr rn = {.nlist = 2, .list = {-4, -6}};
  BAD(ADD(IR_RESHAPE, &rn, x), "reshape: invalid target shape [-4, -6]");
  ir_attr r9 = {.nlist = 9};
  BAD(ADD(IR_RESHAPE, &r9, x), "reshape: rank must be 0..8, got 9");

  ir_attr t = {.nlist = 3, .list = {2, 0, 1}};
  OK(ADD(IR_TRANSPOSE, &t, x), "f32[4, 2, 3]");
  ir_attr td = {.nlist = 3, .list = {0, 0, 1}};
  BAD(ADD(IR_TRANSPOSE, &td, x), "transpose: [0, 0, 1] is not a permutation of the 3 axes of [2, 3, 4]");
  ir_attr t2 = {.nlist = 2, .list = {1, 0}};
  BAD(ADD(IR_TRANSPOSE, &t2, x), "transpose: [1, 0] is not a permutation of the 3 axes of [2, 3, 4]");
  ir_attr to = {.nlist = 3, .list = {0, 1, 7}};
  BAD(ADD(IR_TRANSPOSE, &to, x), "transpose: [0, 1, 7] is not a permutation of the 3 axes of [2, 3, 4]");

  int a = T("f32[2, 3]"), b = T("f32[2, 5]"), c = T("f32[4, 3]"), i = T("i32[2, 3]");
  ir_attr ax1 = {.axis = 1}, ax0 = {.axis = 0}, ax2 = {.axis = 2};
  OK(ADD(IR_CONCAT, &ax1, a, b, a), "f32[2, 11]");
  OK(ADD(IR_CONCAT, &ax0, a, c), "f32[6, 3]");
  OK(ADD(IR_CONCAT, &ax0, a), "f32[2, 3]");
  BAD(ADD(IR_CONCAT, &ax0, a, b), "concat: input 1 [2, 5] does not match input 0 [2, 3] outside axis 0");
  BAD(ADD(IR_CONCAT, &ax1, a, x), "concat: input 1 [2, 3, 4] does not match input 0 [2, 3] outside axis 1");
  BAD(ADD(IR_CONCAT, &ax1, a, i), "concat: dtypes differ: input 0 is f32, input 1 is i32");
  BAD(ADD(IR_CONCAT, &ax2, a, b), "concat: axis 2 out of range for rank 2");

  ir_attr s = {.axis = 1, .start = 1, .end = 4};
  OK(ADD(IR_SLICE, &s, b), "f32[2, 3]");
  ir_attr sf = {.axis = 1, .start = 0, .end = 5};
  OK(ADD(IR_SLICE, &sf, b), "f32[2, 5]");
  ir_attr se = {.axis = 1, .start = 3, .end = 3};
  BAD(ADD(IR_SLICE, &se, b), "slice: range 3:3 is empty or outside axis 1 of size 5");
  ir_attr so = {.axis = 0, .start = 0, .end = 3};
  BAD(ADD(IR_SLICE, &so, b), "slice: range 0:3 is empty or outside axis 0 of size 2");
  ir_attr sa = {.axis = -1, .start = 0, .end = 1};
  BAD(ADD(IR_SLICE, &sa, b), "slice: axis -1 out of range for rank 2");

  ir_attr oh = {.n = 7}, oh0 = {.n = 0};
  OK(ADD(IR_ONE_HOT, &oh, T("i32[2, 5]")), "f32[2, 5, 7]");
  OK(ADD(IR_ONE_HOT, &oh, T("i64[]")), "f32[7]");
  BAD(ADD(IR_ONE_HOT, &oh, b), "one_hot: ids must be integers, got f32[2, 5]");
  BAD(ADD(IR_ONE_HOT, &oh0, T("i32[3]")), "one_hot: number of classes must be >= 1, got 0");
  ir_attr c1 = {.axis = 1}, c2 = {.axis = 2};
  OK(ADD(IR_CUMSUM, &c1, b), "f32[2, 5]");
  BAD(ADD(IR_CUMSUM, &c2, b), "cumsum: axis 2 out of range for rank 2");
  BAD(ADD(IR_CUMSUM, &c1, T("i32[2, 5]")), "cumsum: input must be floating-point, got i32[2, 5]");
  OK(ADD(IR_GATHER, &c1, b, T("i32[2, 9]")), "f32[2, 9]");
  OK(ADD(IR_GATHER, &ax0, b, T("i64[4, 3]")), "f32[4, 3]");
  BAD(ADD(IR_GATHER, &c1, b, T("i32[3, 2]")),
      "gather: index [3, 2] must have the rank of input [2, 5] and no larger size off axis 1");
  BAD(ADD(IR_GATHER, &c1, b, T("i32[2]")),
      "gather: index [2] must have the rank of input [2, 5] and no larger size off axis 1");
  BAD(ADD(IR_GATHER, &c1, b, b), "gather: index must be integers, got f32[2, 5]");
  BAD(ADD(IR_GATHER, &c2, b, T("i32[2, 5]")), "gather: axis 2 out of range for rank 2");

  int ids = T("i32[2, 5]"), id0 = T("i64[]"), emb = T("f32[100, 16]");
  OK(ADD(IR_EMBEDDING, NULL, ids, emb), "f32[2, 5, 16]");
  OK(ADD(IR_EMBEDDING, NULL, id0, emb), "f32[16]");
  BAD(ADD(IR_EMBEDDING, NULL, a, emb), "embedding: ids must be integers, got f32[2, 3]");
  BAD(ADD(IR_EMBEDDING, NULL, ids, x), "embedding: weight must be [vocab, dim], got [2, 3, 4]");
  BAD(ADD(IR_EMBEDDING, NULL, T("i32[1, 1, 1, 1, 1, 1, 1, 1]"), emb),
      "embedding: ids rank 8 leaves no room for the embedding axis");
}

/* ---- sequence layers ---- */

static void test_sequence(void) {
  reset();
  int x = T("f32[2, 5, 8]");
  int qw = T("f32[8, 24]"), qb = T("f32[24]"), pw = T("f32[8, 8]"), pb = T("f32[8]");
  ir_attr h2 = {.heads = 2, .causal = 1};
  int at = ADD(IR_ATTENTION, &h2, x, qw, qb, pw, pb);
  OK(at, "f32[2, 5, 8]");
  /* qkv 2*10*8*24 + 10*24, scores and AV 2*10*5*8 each, softmax 10*5*2, proj 2*10*64 + 10*8 */
  CHECK(ir_node_flops(&G, at) == 3840 + 240 + 800 + 800 + 100 + 1280 + 80);
  ir_attr h3 = {.heads = 3};
  BAD(ADD(IR_ATTENTION, &h3, x, qw, qb, pw, pb), "attention: model dimension 8 is not divisible by 3 heads");
  BAD(ADD(IR_ATTENTION, &h2, x, pw, qb, pw, pb), "attention: qkv weight must be [8, 24], got [8, 8]");
  BAD(ADD(IR_ATTENTION, &h2, x, qw, qb, pw, qb), "attention: proj bias must be [8], got [24]");
  BAD(ADD(IR_ATTENTION, &h2, T("f32[5, 8]"), qw, qb, pw, pb),
      "attention: input must be rank 3 [batch, T, features], got [5, 8]");

  /* mha: cross-attention of x over c[2, 7, 6], 2 of 4 heads for keys and values (dk = 4) */
  int c = T("f32[2, 7, 6]"), mw = T("f32[6, 8]"), mb = T("f32[8]"), len = T("i32[2]");
  ir_attr g2 = {.heads = 4, .k = 2, .causal = 1, .i = 1};
  int mh = ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb, len);
  OK(mh, "f32[2, 5, 8]");
  /* q and output projections 2 * 2*10*64, kv 2*14*48, Q K^T and P V 2*10*7*8 each, softmax 10*7*4 */
  CHECK(ir_node_flops(&G, mh) == 2560 + 1344 + 2 * 1120 + 280);
  OK(ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb, T("bool[2, 7]")), "f32[2, 5, 8]");
  OK(ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb, T("bool[2, 5, 7]")), "f32[2, 5, 8]");
  OK(ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb), "f32[2, 5, 8]");
  BAD(ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb, T("bool[2, 5]")),
      "mha: the mask must be lengths i32[2], bool[2, 7] or bool[2, 5, 7], got bool[2, 5]");
  BAD(ADD(IR_MHA, &g2, x, pw, pb, c, mw, mb, pw, pb, T("i64[2]")),
      "mha: the mask must be lengths i32[2], bool[2, 7] or bool[2, 5, 7], got i64[2]");
  BAD(ADD(IR_MHA, &g2, x, pw, pb, c, T("f32[6, 16]"), mb, pw, pb), "mha: the key/value weight must be f32[6, 8], got f32[6, 16]");
  ir_attr g3 = {.heads = 4, .k = 3};
  BAD(ADD(IR_MHA, &g3, x, pw, pb, c, mw, mb, pw, pb),
      "mha: 4 heads must divide the inner width 8 and be a multiple of kv_heads 3");
  /* an inner width e = 12 other than d = 8 (head_dim=3): wq [8, 12], wkv [6, 2 * 2 * 3], wp [12, 8] */
  int eq = T("f32[8, 12]"), eb = T("f32[12]"), ekv = T("f32[6, 12]"), ep = T("f32[12, 8]");
  ir_attr ge = {.heads = 4, .k = 2, .causal = 1};
  int me = ADD(IR_MHA, &ge, x, eq, eb, c, ekv, eb, ep, pb);
  OK(me, "f32[2, 5, 8]");
  /* q and output 4*10*8*12, kv 2*14*72, Q K^T and P V 2*10*7*12 each, softmax 10*7*4 */
  CHECK(ir_node_flops(&G, me) == 3840 + 2016 + 2 * 1680 + 280);
  BAD(ADD(IR_MHA, &ge, x, eq, eb, c, ekv, eb, pw, pb), "mha: the output weight must be f32[12, 8], got f32[8, 8]");
  BAD(ADD(IR_MHA, &ge, x, eq, pb, c, ekv, eb, ep, pb), "mha: the query bias must be f32[12], got f32[8]");
  BAD(ADD(IR_MHA, &ge, x, T("f32[8, 10]"), eb, c, ekv, eb, ep, pb),
      "mha: 4 heads must divide the inner width 10 and be a multiple of kv_heads 2");
  ir_attr odd = {.heads = 8, .k = 8, .i = 1};
  BAD(ADD(IR_MHA, &odd, x, pw, pb, c, T("f32[6, 16]"), T("f32[16]"), pw, pb),
      "mha: rotary embeddings need an even head width, got 1");
  BAD(ADD(IR_MHA, &g2, x, pw, pb, T("f32[3, 7, 6]"), mw, mb, pw, pb),
      "mha: x and the context must be [batch, T, width] with one batch, got [2, 5, 8] and [3, 7, 6]");
  BAD(ADD(IR_MHA, &g2, x, pw, pb, c, mw), "mha: 5 inputs, expected 8 or 9");

  int s = T("f32[2, 5, 3]");
  int rih = T("f32[3, 4]"), rhh = T("f32[4, 4]"), rb = T("f32[4]");
  int r = ADD(IR_RNN, NULL, s, rih, rhh, rb);
  OK(r, "f32[2, 5, 4]");
  CHECK(ir_node_flops(&G, r) == 5 * (2 * 2 * 3 * 4 + 2 * 2 * 4 * 4 + 2 * 2 * 4));
  BAD(ADD(IR_RNN, NULL, s, rhh, rhh, rb), "rnn: w_ih must be [3, 4], got [4, 4]");
  BAD(ADD(IR_RNN, NULL, s, rih, rb, rb), "rnn: w_hh must be rank 2 [h, 1*h], got [4]");

  int lih = T("f32[3, 16]"), lhh = T("f32[4, 16]"), lb = T("f32[16]");
  OK(ADD(IR_LSTM, NULL, s, lih, lhh, lb), "f32[2, 5, 4]");
  BAD(ADD(IR_LSTM, NULL, s, lih, lhh, rb), "lstm: bias must be [16], got [4]");
  BAD(ADD(IR_LSTM, NULL, s, lih, T("f32[4, 12]"), lb), "lstm: w_hh must be [4, 16], got [4, 12]");

  int gih = T("f32[3, 12]"), ghh = T("f32[4, 12]"), gb = T("f32[12]");
  OK(ADD(IR_GRU, NULL, s, gih, ghh, gb, gb), "f32[2, 5, 4]");
  BAD(ADD(IR_GRU, NULL, s, gih, ghh, gb, lb), "gru: b_hh must be [12], got [16]");
  BAD(ADD(IR_GRU, NULL, s, gih, ghh, gb), "gru: expects 5 inputs, got 4");
  BAD(ADD(IR_GRU, NULL, T("i32[2, 5, 3]"), gih, ghh, gb, gb), "gru: input must be floating-point, got i32[2, 5, 3]");
}

/* ---- losses ---- */

static void test_losses(void) {
  reset();
  int lg = T("f32[4, 10]"), lb = T("i32[4]"), lg3 = T("f32[2, 3, 10]"), lb3 = T("i64[2, 3]");
  OK(ADD(IR_CROSS_ENTROPY, NULL, lg, lb), "f32[]");
  OK(ADD(IR_CROSS_ENTROPY, NULL, lg3, lb3), "f32[]");
  OK(ADD(IR_CROSS_ENTROPY, NULL, T("f16[10]"), T("i32[]")), "f32[]");
  BAD(ADD(IR_CROSS_ENTROPY, NULL, lg, T("i32[4, 1]")),
      "cross_entropy: labels must have shape [4] for logits [4, 10], got [4, 1]");
  BAD(ADD(IR_CROSS_ENTROPY, NULL, lg, T("f32[4]")), "cross_entropy: labels must be integers, got f32[4]");
  BAD(ADD(IR_CROSS_ENTROPY, NULL, lb, lb), "cross_entropy: logits must be floating-point, got i32[4]");
  ir_attr ls = {.f = 1.5};
  BAD(ADD(IR_CROSS_ENTROPY, &ls, lg, lb), "cross_entropy: label smoothing must be in [0, 1], got 1.5");

  int p = T("f32[4, 3]"), q = T("f32[4, 3]"), r = T("f32[4]");
  OK(ADD(IR_MSE, NULL, p, q), "f32[]");
  OK(ADD(IR_BCE, NULL, p, q), "f32[]");
  BAD(ADD(IR_MSE, NULL, p, r), "mse: shapes differ: [4, 3] vs [4]");
  BAD(ADD(IR_BCE, NULL, p, T("f16[4, 3]")), "bce: dtypes differ: f32 vs f16");
  /* the losses of issue 17 item 6 */
  ir_attr delta = {.f = 1.0};
  OK(ADD(IR_L1, NULL, p, q), "f32[]");
  OK(ADD(IR_HUBER, &delta, p, q), "f32[]");
  OK(ADD(IR_KL_DIV, NULL, p, q), "f32[]");
  BAD(ADD(IR_L1, NULL, p, r), "l1_loss: shapes differ: [4, 3] vs [4]");
  BAD(ADD(IR_HUBER, &delta, p, r), "huber: shapes differ: [4, 3] vs [4]");
  BAD(ADD(IR_KL_DIV, NULL, p, r), "kl_div: shapes differ: [4, 3] vs [4]");
  OK(ADD(IR_NLL, NULL, lg, lb), "f32[]");
  BAD(ADD(IR_NLL, NULL, lg, T("f32[4]")), "nll: labels must be integers, got f32[4]");
  BAD(ADD(IR_NLL, NULL, lg, T("i32[3]")), "nll: labels must have shape [4] for logits [4, 10], got [3]");
}

/* batchnorm (both forms), groupnorm, rmsnorm and norm_grad: each operand named */
static void test_norms(void) {
  reset();
  int x = T("f32[4, 3, 5]"), c = T("f32[3]"), c4 = T("f32[4]"), d5 = T("f32[5]");
  ir_attr eps = {.f = 1e-5, .f2 = 0.1}, gn = {.f = 1e-5, .k = 3};
  OK(ADD(IR_BATCHNORM, &eps, x, c, c, c, c), "f32[4, 3, 5]");
  OK(ADD(IR_BATCHNORM, &eps, T("f32[6, 3]"), c, c, c, c), "f32[6, 3]");
  BAD(ADD(IR_BATCHNORM, &eps, x, c, c, c4, c), "batchnorm: running_mean must be f32[3], got f32[4]");
  BAD(ADD(IR_BATCHNORM, &eps, x, c, c, c, T("f16[3]")), "batchnorm: running_var must be f32[3], got f16[3]");
  BAD(ADD(IR_BATCHNORM, &eps, T("f32[3]"), c, c, c, c), "batchnorm: input must be [N, C] or [N, C, ...], got f32[3]");
  ir_attr mom = {.f = 1e-5, .f2 = 1.5}, zero = {.f = 0};
  BAD(ADD(IR_BATCHNORM, &mom, x, c, c, c, c), "batchnorm: momentum must be in [0, 1], got 1.5");
  OK(ADD(IR_BATCHNORM_TRAIN, &eps, x, c, c), "f32[4, 3, 5]");
  BAD(ADD(IR_BATCHNORM_TRAIN, &eps, x, c4, c), "batchnorm_train: weight must be f32[3], got f32[4]");
  BAD(ADD(IR_BATCHNORM_TRAIN, &zero, x, c, c), "batchnorm_train: eps must be positive, got 0");
  OK(ADD(IR_GROUPNORM, &gn, T("f32[2, 6, 4]"), T("f32[6]"), T("f32[6]")), "f32[2, 6, 4]");
  BAD(ADD(IR_GROUPNORM, &gn, T("f32[2, 4, 4]"), c4, c4), "groupnorm: groups must divide the 4 channels, got 3");
  BAD(ADD(IR_GROUPNORM, &gn, x, c, c4), "groupnorm: bias must be f32[3], got f32[4]");
  BAD(ADD(IR_GROUPNORM, &gn, T("i32[2, 3]"), c, c), "groupnorm: input must be floating-point, got i32[2, 3]");
  OK(ADD(IR_RMSNORM, &eps, x, d5), "f32[4, 3, 5]");
  BAD(ADD(IR_RMSNORM, &eps, x, c), "rmsnorm: weight must be f32[5], got f32[3]");
  BAD(ADD(IR_RMSNORM, &eps, T("f32[]"), T("f32[1]")), "rmsnorm: input must be a tensor of rank >= 1, got f32[]");
  ir_attr dx = {.k = IR_BATCHNORM_TRAIN, .f = 1e-5}, dw = dx, bad = dx;
  dw.i = 1, bad.k = IR_INPUT;
  OK(ADD(IR_NORM_GRAD, &dx, x, c, x), "f32[4, 3, 5]");
  OK(ADD(IR_NORM_GRAD, &dw, x, c, x), "f32[3]");
  BAD(ADD(IR_NORM_GRAD, &dx, x, c, T("f32[4, 3]")), "norm_grad: dy must be f32[4, 3, 5], got f32[4, 3]");
  BAD(ADD(IR_NORM_GRAD, &bad, x, c, x), "norm_grad: k must name batchnorm_train, groupnorm or rmsnorm, got 0");
}

/* qmatmul: each mode's stored tensors (rt/rt_quant.h) */
static void test_qmatmul(void) {
  reset();
  /* w8, w4: N = 5 columns stored in a block of 16 */
  int x = T("f32[2, 3, 64]"), w8 = T("i8[16, 64]"), s2 = T("f32[16, 2]"), w4 = T("u8[16, 32]"), s1 = T("f32[5]"),
      c = T("i32[5]"), h = T("bf16[5, 64]"), x100 = T("f32[4, 100]"), d100 = T("i8[16, 128]");
  ir_attr a = {.i = 1, .n = 5};
  OK(ADD(IR_QMATMUL, &a, x, w8, s2), "f32[2, 3, 5]");
  a.i = 2;
  OK(ADD(IR_QMATMUL, &a, x, w4, s2), "f32[2, 3, 5]");
  BAD(ADD(IR_QMATMUL, &a, x, w8, s2), "qmatmul: w must be u8[16, 32], got i8[16, 64]");
  a.i = 3;
  OK(ADD(IR_QMATMUL, &a, x100, d100, s1, c), "f32[4, 5]");
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s1, s1), "qmatmul: c must be i32[5], got f32[5]");
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s1), "qmatmul: mode 3 takes 4 inputs (and a bias), got 3");
  a.i = 4;
  OK(ADD(IR_QMATMUL, &a, x, h), "f32[2, 3, 5]");
  a.i = 5;
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: w must be f16[5, 64], got bf16[5, 64]");
  a.i = 1;
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s2), "qmatmul: w8 and w4 need K a multiple of 32, got 100");
  a.i = 3;
  BAD(ADD(IR_QMATMUL, &a, x100, T("i8[5, 128]"), s1, c), "qmatmul: w must be i8[16, 128], got i8[5, 128]");
  a.i = 1;
  BAD(ADD(IR_QMATMUL, &a, w8, w8, s2), "qmatmul: x must be f32 of rank >= 1, got i8[16, 64]");
  a.i = 6; /* static int8: the input's scale after the columns' */
  OK(ADD(IR_QMATMUL, &a, x100, d100, T("f32[6]"), c), "f32[4, 5]");
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s1, c), "qmatmul: s must be f32[6], got f32[5]");
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: mode 6 takes 4 inputs (and a bias), got 2");
  a.axis = 1; /* the epilogue: + bias, relu */
  OK(ADD(IR_QMATMUL, &a, x100, d100, T("f32[6]"), c, s1), "f32[4, 5]");
  BAD(ADD(IR_QMATMUL, &a, x100, d100, T("f32[6]"), c, T("f32[6]")), "qmatmul: bias must be f32[5], got f32[6]");
  a.axis = 2;
  BAD(ADD(IR_QMATMUL, &a, x100, d100, T("f32[6]"), c, s1),
      "qmatmul: the epilogue's activation (axis) is 1 (relu), in the int8 modes and bf16 on its dot products only; got 2");
  a.axis = 0, a.k = 4; /* its f32 form */
  OK(ADD(IR_QMATMUL, &a, x100, d100, T("f32[6]"), c), "f32[4, 5]");
  a.i = 7, a.k = 0;
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: unknown mode 7 (expected 1 to 6)");
  a.i = 4, a.k = 9;
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: unknown integer kernel k=9 (expected 0 to 3, or 8: avx512-bf16, 10: amx-bf16)");
  a.k = 4; /* the f32 form is static int8's only */
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: unknown integer kernel k=4 (expected 0 to 3, or 8: avx512-bf16, 10: amx-bf16)");
  a.k = 8; /* bf16 on the bf16 dot products: bf16's only */
  OK(ADD(IR_QMATMUL, &a, x, h), "f32[2, 3, 5]");
  a.i = 5;
  BAD(ADD(IR_QMATMUL, &a, x, h), "qmatmul: unknown integer kernel k=8 (expected 0 to 3)");
  /* static int8 between products (rt/rt_qdq.h): i8 in, i8 out (pad 1, the scale last) */
  int q100 = T("i8[4, 100]"), s6 = T("f32[6]");
  a.i = 6, a.k = 3, a.pad = 0;
  OK(ADD(IR_QMATMUL, &a, q100, d100, s6, c), "f32[4, 5]");
  a.pad = 1;
  OK(ADD(IR_QMATMUL, &a, q100, d100, s6, c, s1, T("f32[9]")), "i8[4, 5]");
  OK(ADD(IR_QMATMUL, &a, x100, d100, s6, c, T("f32[9]")), "i8[4, 5]");
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s6, c, T("i32[9]")),
      "qmatmul: the output's scale (its last input) must be f32 of rank 1, got i32[9]");
  a.k = 4;
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s6, c, s1), "qmatmul: an i8 input or output needs an integer kernel (k=1 to 3 or 9), got k=4");
  a.i = 3, a.k = 3;
  BAD(ADD(IR_QMATMUL, &a, x100, d100, s1, c, s1), "qmatmul: pad (an int8 output) is static int8's only, 0 or 1; got 1");
  a.pad = 0;
  BAD(ADD(IR_QMATMUL, &a, q100, d100, s1, c), "qmatmul: x must be f32 of rank >= 1, got i8[4, 100]");
  ir_attr qa = {.n = 5};
  OK(ADD(IR_QUANTIZE, &qa, x100, s6), "i8[4, 100]");
  OK(ADD(IR_DEQUANTIZE, &qa, q100, s6), "f32[4, 100]");
  BAD(ADD(IR_QUANTIZE, &qa, q100, s6), "quantize: x must be f32, got i8[4, 100]");
  BAD(ADD(IR_DEQUANTIZE, &qa, x100, s6), "dequantize: x must be i8, got f32[4, 100]");
  BAD(ADD(IR_QUANTIZE, &qa, x100, s1), "quantize: the scale's index n=5 is outside its 5 scales");
  BAD(ADD(IR_QUANTIZE, &qa, x100, c), "quantize: the scales must be an f32 vector, got i32[5]");
}

/* qconv2d: conv2d's geometry from its list (the f32 weight's shape), the
 * stored [O, C*KH*KW] matrix as qmatmul's int8 modes store it */
static void test_qconv2d(void) {
  reset();
  int x = T("f32[2, 16, 4, 4]"), w = T("i8[32, 192]"), s = T("f32[32]"), s1 = T("f32[33]"), c = T("i32[32]");
  ir_attr a = {.i = 3, .stride = 1, .pad = 1, .pad_hi = 1, .nlist = 4, .list = {32, 16, 3, 3}};
  OK(ADD(IR_QCONV2D, &a, x, w, s, c), "f32[2, 32, 4, 4]");
  OK(ADD(IR_QCONV2D, &a, x, w, s, c, s), "f32[2, 32, 4, 4]");
  BAD(ADD(IR_QCONV2D, &a, x, w, s1, c), "qconv2d: s must be f32[32], got f32[33]");
  a.i = 6, a.k = 4, a.axis = 1; /* static int8 in its f32 form, relu */
  OK(ADD(IR_QCONV2D, &a, x, w, s1, c, s), "f32[2, 32, 4, 4]");
  BAD(ADD(IR_QCONV2D, &a, x, T("i8[32, 128]"), s1, c), "qconv2d: w must be i8[32, 192], got i8[32, 128]");
  BAD(ADD(IR_QCONV2D, &a, x, w, s1), "qconv2d: takes x, w, s, c and an optional bias, got 3 inputs");
  a.stride = 2, a.pad = a.pad_hi = 0; /* 4x4 -> 1x1 */
  OK(ADD(IR_QCONV2D, &a, x, w, s1, c), "f32[2, 32, 1, 1]");
  a.list[1] = 8;
  BAD(ADD(IR_QCONV2D, &a, x, w, s1, c), "conv2d: channels differ: input [2, 16, 4, 4] has 16, weight [32, 8, 3, 3] expects 8");
  a.list[1] = 16, a.i = 1;
  BAD(ADD(IR_QCONV2D, &a, x, w, s1, c), "qconv2d: mode must be 3 (int8-dynamic) or 6 (static int8), got 1");
  a.i = 3, a.k = 4;
  BAD(ADD(IR_QCONV2D, &a, x, w, s, c), "qconv2d: unknown integer kernel k=4 (expected 0 to 3)");
  a.k = 0, a.axis = 2;
  BAD(ADD(IR_QCONV2D, &a, x, w, s, c), "qconv2d: the epilogue's activation (axis) is 0 or 1 (relu), got 2");
  /* static int8 between products (rt/rt_qdq.h): i8 in, i8 out (start 1, the scale last) */
  int x8 = T("i8[2, 16, 4, 4]");
  a.i = 6, a.k = 3, a.axis = 1, a.stride = 1, a.pad = a.pad_hi = 1;
  OK(ADD(IR_QCONV2D, &a, x8, w, s1, c), "f32[2, 32, 4, 4]");
  a.start = 1;
  OK(ADD(IR_QCONV2D, &a, x8, w, s1, c, s, T("f32[9]")), "i8[2, 32, 4, 4]");
  OK(ADD(IR_QCONV2D, &a, x, w, s1, c, T("f32[9]")), "i8[2, 32, 4, 4]");
  BAD(ADD(IR_QCONV2D, &a, x, w, s1, c, c), "qconv2d: the output's scale (its last input) must be f32 of rank 1");
  a.k = 4;
  BAD(ADD(IR_QCONV2D, &a, x, w, s1, c, s), "qconv2d: an i8 input or output needs an integer kernel (k=1 to 3), got k=4");
  a.i = 3, a.k = 3;
  BAD(ADD(IR_QCONV2D, &a, x, w, s, c, s), "qconv2d: start (an int8 output) is static int8's only, 0 or 1; got 1");
  a.start = 0;
  BAD(ADD(IR_QCONV2D, &a, x8, w, s, c), "qconv2d: x must be f32");
}

/* every op of the table was exercised above: a new row must add its cases
 * here and then update this count */
static void test_table_covered(void) {
  CHECK(IR_SUM_TO == 71); /* forward ops; the backward ones (IR_CAT_GRAD) are tests/test_grad.c's */
  for (int op = 0; op < IR_NOPS; op++) CHECK(ir_ops[op].name && ir_ops[op].shape);
}

/* ---- verifier ---- */

static int build_mlp(void) {
  reset();
  ir_shape xs = {.rank = 2, .d = {4, 3}}, ws = {.rank = 2, .d = {3, 2}}, ys = {.rank = 1, .d = {4}};
  int x = ir_add_input(&G, "x", IR_F32, &xs, 0, NOLOC);
  int y = ir_add_input(&G, "y", IR_I32, &ys, 1, NOLOC);
  int w = ir_add_param(&G, "fc.weight", IR_F32, &ws, IR_INIT_XAVIER, 0, 3, 2, NOLOC);
  int h = ADD(IR_MATMUL, NULL, x, w);
  int r = ADD(IR_RELU, NULL, h);
  G.nodes[r].name = "h";
  ir_add_output(&G, "h", r);
  G.loss = ADD(IR_CROSS_ENTROPY, NULL, r, y);
  return h;
}

static void test_verify(void) {
  int h = build_mlp();
  CHECK_MSG(ir_verify(&G, msg, sizeof msg) == 0, "%s", msg);

  G.nodes[h].shape.d[1] = 5;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) stores f32[4, 5] but its inputs give f32[4, 2]");

  h = build_mlp();
  G.nodes[h].in[1] = h;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) input 1 is %3, not an earlier node");

  h = build_mlp();
  G.nodes[h].in[1] = 1; /* x @ y: y is i32[4] */
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) no longer type-checks: matmul: right operand must be "
                 "floating-point, got i32[4]");

  build_mlp();
  G.nodes[h].nin = 1;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) has 1 inputs");

  build_mlp();
  G.params[0].node = 0;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 2 (param) is entry 0, which names node 0");

  build_mlp();
  G.inputs[0].shape.d[0] = 8;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 0 (input) is f32[4, 3] but its table entry says f32[8, 3]");

  build_mlp();
  G.loss = h;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: loss node 3 is not a float scalar");

  build_mlp();
  G.outputs[0].node = 42;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: output 0 (h) refers to missing node 42");

  build_mlp(); /* x[4, 3] @ w[3, 2] read as x @ w^T */
  G.nodes[h].attr.i = 2;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) no longer type-checks: matmul: inner dimensions differ: "
                 "[4, 3] @ [3, 2]^T (3 vs 2)");

  build_mlp();
  G.nodes[h].shape.d[0] = (int64_t)1 << 50;
  CHECK(ir_verify(&G, msg, sizeof msg) == -1);
  CHECK_STR(msg, "verify: node 3 (matmul) has invalid shape f32[1125899906842624, 2]");
}

/* ---- printer and stats ---- */

static char *capture(void (*fn)(const ir_graph *, FILE *)) {
  static char out[8192];
  FILE *f = tmpfile();
  if (!f) return strcpy(out, "(tmpfile failed)");
  fn(&G, f);
  rewind(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  return out;
}

static void test_print(void) {
  reset();
  ir_shape xs = {.rank = 2, .d = {2, 3}}, ws = {.rank = 2, .d = {3, 4}};
  int x = ir_add_input(&G, "x", IR_F32, &xs, 0, NOLOC);
  int w = ir_add_param(&G, "w", IR_F32, &ws, IR_INIT_NORMAL, 0.02, 3, 4, NOLOC);
  int y = ADD(IR_MATMUL, NULL, x, w);
  G.nodes[y].name = "y";
  ir_add_output(&G, "y", y);
  CHECK_STR(capture(ir_print),
            "model t\n"
            "%0 = input x : f32[2, 3]\n"
            "%1 = param w : f32[3, 4]\n"
            "%2 = matmul(%0, %1) : f32[2, 4]  # y\n"
            "output y = %2\n");
  ir_attr a = {.axis = 1, .keepdims = 1};
  int s = ADD(IR_SUM, &a, y);
  int c = ir_add_const(&G, IR_F32, 0.5, NOLOC);
  ir_attr to = {.i = IR_F16};
  int h = ADD(IR_CAST, &to, ADD(IR_MUL, NULL, s, c));
  (void)h;
  ir_attr r = {.nlist = 2, .list = {1, 2}};
  ADD(IR_RESHAPE, &r, h);
  const char *out = capture(ir_print);
  CHECK(strstr(out, "%3 = sum(%2) axis=1 keepdims=1 : f32[2, 1]\n") != NULL);
  CHECK(strstr(out, "%4 = const 0.5 : f32[]\n") != NULL);
  CHECK(strstr(out, "%6 = cast(%5) to=f16 : f16[2, 1]\n") != NULL);
  CHECK(strstr(out, "%7 = reshape(%6) list=[1, 2] : f16[1, 2]\n") != NULL);
  const char *dot = capture(ir_dot);
  CHECK(strncmp(dot, "digraph \"t\" {\n", 14) == 0);
  CHECK(strstr(dot, "n0 [shape=ellipse") != NULL);
  CHECK(strstr(dot, "label=\"%2 matmul\\nf32[2, 4]\\ny\"") != NULL);
  CHECK(strstr(dot, "n1 -> n2;") != NULL);
  CHECK(dot[strlen(dot) - 2] == '}');
  /* matmul's transpose flags follow its name */
  ir_attr fl[3] = {{.i = 1}, {.i = 2}, {.i = 3}};
  for (int k = 0; k < 3; k++) ADD(IR_MATMUL, &fl[k], k == 2 ? w : x, x);
  out = capture(ir_print);
  CHECK_MSG(strstr(out, "%8 = matmul[ta](%0, %0) : f32[3, 3]\n") != NULL, "%s", out);
  CHECK(strstr(out, "%9 = matmul[tb](%0, %0) : f32[2, 2]\n") != NULL);
  CHECK(strstr(out, "%10 = matmul[ta,tb](%1, %0) : f32[4, 2]\n") != NULL);
  dot = capture(ir_dot);
  CHECK(strstr(dot, "label=\"%10 matmul[ta,tb]\\nf32[4, 2]\"") != NULL);
}

static void test_stats(void) {
  reset();
  ir_shape xs = {.rank = 2, .d = {2, 3}}, ws = {.rank = 2, .d = {3, 4}}, bs = {.rank = 1, .d = {4}};
  int x = ir_add_input(&G, "x", IR_F32, &xs, 0, NOLOC);
  int w = ir_add_param(&G, "w", IR_F32, &ws, IR_INIT_NORMAL, 0.02, 3, 4, NOLOC);
  int b = ir_add_param(&G, "b", IR_F32, &bs, IR_INIT_ZEROS, 0, 0, 0, NOLOC);
  int y = ADD(IR_MATMUL, NULL, x, w);
  int z = ADD(IR_ADD, NULL, y, b);
  int e = ADD(IR_EXP, NULL, z);
  ir_attr all = {.axis = -1};
  int s = ADD(IR_SUM, &all, e);
  CHECK(ir_node_flops(&G, x) == 0);
  CHECK(ir_node_flops(&G, y) == 2 * 2 * 4 * 3);
  CHECK(ir_node_flops(&G, z) == 8 && ir_node_flops(&G, e) == 8 && ir_node_flops(&G, s) == 8);
  CHECK(ir_node_bytes(&G, y) == 32);
  ir_stats st;
  ir_graph_stats(&G, &st);
  CHECK(st.params == 16 && st.param_bytes == 64 && st.input_bytes == 24);
  CHECK(st.activation_bytes == 32 * 3 + 4);
  CHECK(st.flops == 48 + 24);
  const char *out = capture(ir_summary);
  CHECK(strstr(out, "matmul") && strstr(out, "48 FLOP"));
  CHECK(strstr(out, "parameters:  16 in 2 tensors (64 B)\n") != NULL);
  CHECK(strstr(out, "forward:     72 FLOP\n") != NULL);
}

/* ---- rng ---- */

static void test_philox(void) {
  /* Random123 known-answer vectors for philox4x32-10 */
  uint32_t c[4] = {0, 0, 0, 0}, k[2] = {0, 0};
  ir_philox4x32_10(c, k);
  CHECK(c[0] == 0x6627e8d5 && c[1] == 0xe169c58d && c[2] == 0xbc57ac4c && c[3] == 0x9b00dbd8);
  uint32_t c2[4] = {~0u, ~0u, ~0u, ~0u}, k2[2] = {~0u, ~0u};
  ir_philox4x32_10(c2, k2);
  CHECK(c2[0] == 0x408f276d && c2[1] == 0x41c83b0e && c2[2] == 0xa20bc7c6 && c2[3] == 0x6d5451fd);
  uint32_t c3[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, k3[2] = {0xa4093822, 0x299f31d0};
  ir_philox4x32_10(c3, k3);
  CHECK(c3[0] == 0xd16cfe09 && c3[1] == 0x94fdcceb && c3[2] == 0x5001e420 && c3[3] == 0x24126ea1);

  /* stream 0, seed 0: the first block is the first vector above */
  ir_rng r, r2;
  ir_rng_seed(&r, 0, 0);
  CHECK(ir_rng_u32(&r) == 0x6627e8d5 && ir_rng_u32(&r) == 0xe169c58d);
  /* pinned against an independent Python transcription of the documented stream */
  ir_rng_seed(&r, 42, 7);
  uint32_t u0 = ir_rng_u32(&r), u1 = ir_rng_u32(&r);
  double un = ir_rng_uniform(&r), nn = ir_rng_normal(&r);
  CHECK(u0 == 2303132462u && u1 == 2668305674u);
  CHECK_NEAR(un, 0.505148598856327, 1e-15);
  CHECK_NEAR(nn, 1.0786789520869335, 1e-12);
  ir_rng_seed(&r, 42, 7);
  ir_rng_seed(&r2, 42, 7);
  int same = 1;
  for (int i = 0; i < 1000; i++) same &= ir_rng_u32(&r) == ir_rng_u32(&r2);
  CHECK(same);
  ir_rng_seed(&r2, 42, 8);
  CHECK(ir_rng_u32(&r) != ir_rng_u32(&r2));
  ir_rng_seed(&r, 1, 0);
  double lo = 1, hi = 0;
  for (int i = 0; i < 10000; i++) {
    double u = ir_rng_uniform(&r);
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  CHECK(lo >= 0 && lo < 0.001 && hi < 1 && hi > 0.999);
}

static void moments(const float *v, int n, double *mean, double *sd) {
  double s = 0, ss = 0;
  for (int i = 0; i < n; i++) s += v[i];
  *mean = s / n;
  for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
  *sd = sqrt(ss / n);
}

static void test_init(void) {
  enum { N = 10000 };
  static float v[N], v2[N];
  ir_param p = {.name = "fc.weight", .dtype = IR_F32, .shape = {.rank = 2, .d = {100, 100}}};
  double m, sd;

  /* pinned: the first values of normal(1) for "fc.weight" with seed 1234 */
  p.init = IR_INIT_NORMAL, p.std = 1;
  ir_param_init_values(&p, 1234, v);
  CHECK(v[0] == 1.89758599f && v[1] == 1.37589931f && v[2] == -0.269919872f && v[3] == -0.547759652f);
  p.std = 0.02;
  ir_param_init_values(&p, 1234, v);
  moments(v, N, &m, &sd);
  CHECK(fabs(m) < 4 * 0.02 / 100 && fabs(sd - 0.02) < 0.001);
  ir_param_init_values(&p, 1234, v2);
  CHECK(memcmp(v, v2, sizeof v) == 0);
  ir_param_init_values(&p, 1235, v2);
  CHECK(memcmp(v, v2, sizeof v) != 0);
  p.name = "fc.bias";
  ir_param_init_values(&p, 1234, v2);
  CHECK(memcmp(v, v2, sizeof v) != 0);
  p.name = "fc.weight";

  p.init = IR_INIT_XAVIER, p.fan_in = 100, p.fan_out = 200;
  ir_param_init_values(&p, 9, v);
  double bound = sqrt(6.0 / 300), maxabs = 0;
  for (int i = 0; i < N; i++) maxabs = fabs(v[i]) > maxabs ? fabs(v[i]) : maxabs;
  moments(v, N, &m, &sd);
  CHECK(maxabs <= bound && maxabs > 0.99 * bound);
  CHECK(fabs(m) < 4 * bound / sqrt(3.0) / 100 && fabs(sd - bound / sqrt(3.0)) < 0.03 * bound);

  p.init = IR_INIT_HE;
  ir_param_init_values(&p, 9, v);
  moments(v, N, &m, &sd);
  CHECK(fabs(m) < 4 * sqrt(0.02) / 100 && fabs(sd - sqrt(0.02)) < 0.05 * sqrt(0.02));

  p.init = IR_INIT_UNIFORM, p.std = 0.5;
  ir_param_init_values(&p, 9, v);
  moments(v, N, &m, &sd);
  CHECK(fabs(m) < 0.02 && fabs(sd - 0.5 / sqrt(3.0)) < 0.01);

  p.init = IR_INIT_ZEROS;
  ir_param_init_values(&p, 9, v);
  moments(v, N, &m, &sd);
  CHECK(m == 0 && sd == 0);
  p.init = IR_INIT_ONES;
  ir_param_init_values(&p, 9, v);
  moments(v, N, &m, &sd);
  CHECK(m == 1 && sd == 0);
}

static void test_arena(void) {
  arena a;
  ar_init(&a);
  char *s = ar_printf(&a, "%s.%d", "h", 3);
  CHECK_STR(s, "h.3");
  CHECK_STR(ar_strndup(&a, "abcdef", 3), "abc");
  void *big = ar_alloc(&a, 1 << 20);
  CHECK(((uintptr_t)big & 15) == 0 && ((unsigned char *)big)[12345] == 0);
  for (int i = 0; i < 1000; i++) CHECK(((uintptr_t)ar_alloc(&a, (size_t)i % 37 + 1) & 15) == 0);
  ar_free(&a);
  CHECK(a.head == NULL);
  ir_dtype t;
  CHECK(ir_dtype_parse("bf16", &t) == 0 && t == IR_BF16 && ir_dtype_size(t) == 2);
  CHECK(ir_dtype_parse("f64", &t) == -1);
  CHECK(ir_dtype_is_float(IR_F16) && !ir_dtype_is_float(IR_BOOL) && ir_dtype_is_int(IR_BOOL));
  CHECK(ir_dtype_size(IR_I64) == 8 && strcmp(ir_dtype_name(IR_U8), "u8") == 0);
}

int main(void) {
  ar_init(&A);
  test_arena();
  test_leaves();
  test_add_checks();
  test_unary();
  test_binary();
  test_matmul();
  test_conv();
  test_reduce();
  test_layernorm_pool();
  test_norms();
  test_movement();
  test_sequence();
  test_losses();
  test_qmatmul();
  test_qconv2d();
  test_table_covered();
  test_verify();
  test_print();
  test_stats();
  test_philox();
  test_init();
  ar_free(&A);
  return TEST_REPORT();
}
