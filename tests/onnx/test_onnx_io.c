/* test_onnx_io.c -- ModelProto out and back in through onnx/onnx_io.c, and
 * damaged files (empty, truncated, a wrong wire type, a 2 GB length, nesting
 * too deep) refused with a message that says what is wrong; graphs that
 * decode but are malformed (a node without op_type, a cycle, a missing
 * initializer) refused by the importer the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnx_io.h"
#include "ox_import.h"
#include "ox_tensor.h"
#include "tests/test.h"

static Onnx__ModelProto *relu_model(Onnx__ModelProto *m, Onnx__GraphProto *g, Onnx__NodeProto *n,
                                    Onnx__OperatorSetIdProto *ops, Onnx__TensorProto *w) {
  static char *ins[] = {"x"}, *outs[] = {"y"};
  static Onnx__NodeProto *nodes[1];
  static Onnx__OperatorSetIdProto *opsets[1];
  static Onnx__TensorProto *inits[1];
  static int64_t dims[] = {2, 3};
  static float vals[] = {1, -2, 3, -4, 5, -6};
  onnx__model_proto__init(m);
  onnx__graph_proto__init(g);
  onnx__node_proto__init(n);
  onnx__operator_set_id_proto__init(ops);
  onnx__tensor_proto__init(w);
  n->op_type = "Relu";
  n->name = "relu0";
  n->n_input = 1, n->input = ins;
  n->n_output = 1, n->output = outs;
  nodes[0] = n;
  w->name = "w";
  w->has_data_type = 1, w->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  w->n_dims = 2, w->dims = dims;
  w->n_float_data = 6, w->float_data = vals;
  inits[0] = w;
  g->name = "g";
  g->n_node = 1, g->node = nodes;
  g->n_initializer = 1, g->initializer = inits;
  ops->domain = "";
  ops->has_version = 1, ops->version = 17;
  opsets[0] = ops;
  m->has_ir_version = 1, m->ir_version = 8;
  m->producer_name = "test_onnx_io";
  m->graph = g;
  m->n_opset_import = 1, m->opset_import = opsets;
  return m;
}

static void expect_error(const uint8_t *buf, size_t len, const char *want) {
  char msg[512] = "";
  Onnx__ModelProto *m = ox_model_unpack("bad.onnx", buf, len, msg, sizeof msg);
  CHECK(m == NULL);
  CHECK_MSG(strstr(msg, want) != NULL, "message '%s' lacks '%s'", msg, want);
  ox_model_free(m);
}

static void expect_import_error(const Onnx__ModelProto *m, const char *want) {
  char msg[512] = "";
  ox_import_result r;
  ox_import_options o = {.base_dir = "/nonexistent"};
  int rc = ox_import(m, &o, &r, msg, sizeof msg);
  CHECK(rc != 0);
  if (rc == 0) ox_import_free(&r);
  CHECK_MSG(strstr(msg, want) != NULL, "message '%s' lacks '%s'", msg, want);
}

/* The importer's refusals of graphs that decode: each names the node. */
static void malformed_graphs(Onnx__ModelProto *m, Onnx__NodeProto *n) {
  static char *self[] = {"y"}, *nowhere[] = {"w_missing"}, *ins[] = {"x"};
  n->op_type = NULL; /* the field is required */
  expect_import_error(m, "has no op_type");
  n->op_type = "Relu";
  n->input = self; /* y = Relu(y) */
  expect_import_error(m, "cycle");
  n->input = nowhere;
  expect_import_error(m, "missing initializer");
  n->input = ins;
}

int main(void) {
  Onnx__ModelProto m;
  Onnx__GraphProto g;
  Onnx__NodeProto n;
  Onnx__OperatorSetIdProto ops;
  Onnx__TensorProto w;
  relu_model(&m, &g, &n, &ops, &w);
  char path[] = "/tmp/lathe_onnx_io_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  char msg[512] = "";
  CHECK_MSG(ox_model_write(path, &m, msg, sizeof msg) == 0, "%s", msg);
  Onnx__ModelProto *r = ox_model_read(path, msg, sizeof msg);
  CHECK_MSG(r != NULL, "%s", msg);
  if (r) {
    CHECK(r->ir_version == 8);
    CHECK(r->n_opset_import == 1 && r->opset_import[0]->version == 17);
    CHECK(r->graph && r->graph->n_node == 1);
    CHECK_STR(r->graph->node[0]->op_type, "Relu");
    CHECK_STR(r->graph->node[0]->output[0], "y");
    ox_array a;
    CHECK_MSG(ox_tensor_decode(r->graph->initializer[0], NULL, &a, msg, sizeof msg) == 0, "%s", msg);
    CHECK(a.rank == 2 && a.d[0] == 2 && a.d[1] == 3 && a.n == 6 && a.f && a.f[3] == -4);
    ox_array_free(&a);
    ox_model_free(r);
  }
  /* damaged copies of the same bytes */
  uint8_t *buf;
  size_t len;
  CHECK(ox_model_pack(&m, &buf, &len, msg, sizeof msg) == 0);
  expect_error(buf, 0, "empty");
  expect_error(buf, len - 3, "past the end");
  uint8_t wrong[] = {0x08 | 0x02, 0x01, 0x00}; /* ir_version (a varint) as length-delimited */
  expect_error(wrong, sizeof wrong, "wrong type");
  uint8_t huge[] = {0x3a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00}; /* graph (field 7), length 2^31 - 1 */
  expect_error(huge, sizeof huge, "past the end");
  /* model.graph -> node -> attribute -> g -> node -> ... far deeper than any model: built from the
   * inside out, each level a key and a varint length before the level inside it */
  enum { DEEP = 300 };
  static uint8_t deep[DEEP * 8];
  size_t k = sizeof deep;
  static const uint8_t keys[] = {0x0a /* GraphProto.node */, 0x2a /* NodeProto.attribute */,
                                 0x32 /* AttributeProto.g */};
  for (int i = DEEP - 1; i >= 0; i--) {
    size_t inner = sizeof deep - k;
    uint8_t v[10];
    int nv = 0;
    do { v[nv++] = (uint8_t)((inner & 0x7f) | (inner > 0x7f ? 0x80 : 0)); inner >>= 7; } while (inner);
    for (int j = nv - 1; j >= 0; j--) deep[--k] = v[j];
    deep[--k] = i == 0 ? 0x3a /* ModelProto.graph */ : keys[(i - 1) % 3];
  }
  expect_error(deep + k, sizeof deep - k, "nested more than");
  /* a typed tensor whose count disagrees with its dims */
  w.n_float_data = 5;
  ox_array a;
  CHECK(ox_tensor_decode(&w, NULL, &a, msg, sizeof msg) != 0 && strstr(msg, "5 values for 6 elements"));
  w.n_float_data = 6;
  malformed_graphs(&m, &n);
  free(buf);
  unlink(path);
  return TEST_REPORT();
}
