/* test_rnn_stack.c -- rnn/lstm/gru with layers= and bidirectional= (lowered
 * by frontend/layers.c to the existing recurrent ops, the reverse direction
 * through a time-reversing gather).
 *
 * Per case, the model `x = param(..); y = OP(x, h, layers=L,
 * bidirectional=..)` and loss = sum(y * R) with fixed random R, autodiff:
 * (1) finite differences: every parameter's gradient (x's too) of the f64
 * interpreter against central differences on a sample of elements
 * (relative error <= 1e-6, floor 1e-3); (2) the LLVM backend against the
 * f32 interpreter: y and every gradient (max relative error <= 1e-4, abs
 * floor 0.1); (3) PyTorch (tests/parity_rnn_stack.py: torch.nn.RNN/LSTM/GRU
 * with num_layers and bidirectional, float64, weights mapped by name): the
 * LLVM program's y within 1e-5 and every gradient (dx included) within
 * 1e-4 in ||lathe - torch|| / ||torch||. Skipped LOUDLY without torch.
 * Also: the parameter names and shapes, dropout= (identity in forward runs,
 * present in the graph only between layers) and the argument errors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/llvm/cg.h"
#include "frontend/frontend.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
  const char *op;
  int layers, bidir;
  int64_t B, T, in, h;
  int fd;
  double dropout;
} rcase;

typedef struct {
  arena A;
  ir_graph g;
  fe_model *m;
  int y, xp; /* y's node, x's parameter index */
  double **v;
  double *R;
} built;

static char *source(const rcase *c) {
  char *s = malloc(600);
  snprintf(s, 600,
           "model t\nx = param([%lld, %lld, %lld], name=\"x\")\n"
           "y = %s(x, %lld, layers=%d, bidirectional=%s, dropout=%g, name=\"r\")\noutput y\n",
           (long long)c->B, (long long)c->T, (long long)c->in, c->op, (long long)c->h, c->layers,
           c->bidir ? "true" : "false", c->dropout);
  return s;
}

static int lower(const char *src, built *b, char **err) {
  ar_init(&b->A);
  ir_graph_init(&b->g, &b->A, "t");
  b->m = fe_parse("t.nn", src, strlen(src), err);
  return b->m && fe_lower(b->m, NULL, &b->g, err) == 0 ? 0 : -1;
}

static int build(const rcase *c, built *b) {
  char *src = source(c), *err = NULL, msg[512];
  int rc = lower(src, b, &err);
  CHECK_MSG(rc == 0, "%s: %s", src, err ? err : "?");
  free(src), free(err);
  if (rc) return -1;
  b->y = b->g.outputs[0].node;
  b->xp = ir_find_param(&b->g, "x");
  ir_shape sy = b->g.nodes[b->y].shape;
  int64_t cnt = ir_numel(&sy);
  ir_loc loc = {0};
  int r = ir_add_const(&b->g, IR_F32, 0, loc);
  b->R = ar_alloc(&b->A, sizeof(double) * (size_t)cnt);
  for (int64_t e = 0; e < cnt; e++) b->R[e] = (double)(float)(urand() - 0.3);
  b->g.nodes[r].shape = sy, b->g.nodes[r].data = b->R;
  int m = ir_add(&b->g, IR_MUL, (int[]){b->y, r}, 2, NULL, loc, msg, sizeof msg);
  ir_attr all = {0};
  all.axis = -1;
  b->g.loss = ir_add(&b->g, IR_SUM, &m, 1, &all, loc, msg, sizeof msg);
  CHECK_MSG(ad_backward(&b->g, NULL, 0, 0, msg, sizeof msg) == 0, "%s: %s", c->op, msg);
  b->v = calloc((size_t)b->g.nnodes, sizeof *b->v);
  for (int p = 0; p < b->g.nparams; p++) {
    int64_t n = ir_numel(&b->g.params[p].shape);
    double *w = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) w[e] = (float)(urand() - 0.5);
    b->v[b->g.params[p].node] = w;
  }
  return 0;
}

static void unbuild(built *b) {
  if (b->v) {
    ir_interp_release(&b->g, b->v);
    for (int p = 0; p < b->g.nparams; p++) free(b->v[b->g.params[p].node]);
    free(b->v);
  }
  fe_free(b->m);
  ar_free(&b->A);
}

static const char *cname(const rcase *c, char *buf, size_t n) {
  snprintf(buf, n, "%s layers=%d%s T=%lld", c->op, c->layers, c->bidir ? " bidirectional" : "", (long long)c->T);
  return buf;
}

static double loss_at(built *b) {
  char msg[512];
  ir_interp_release(&b->g, b->v);
  if (ir_interp(&b->g, IR_INTERP_F64, b->v, msg, sizeof msg)) return NAN;
  return b->v[b->g.loss][0];
}

/* (1) autodiff in f64 against central differences */
static void check_fd(const rcase *c) {
  built b = {0};
  char nm[120], msg[512];
  cname(c, nm, sizeof nm);
  if (build(c, &b)) return unbuild(&b);
  CHECK_MSG(ir_interp(&b.g, IR_INTERP_F64, b.v, msg, sizeof msg) == 0, "%s: %s", nm, msg);
  int np = b.g.nparams;
  double **an = calloc((size_t)np, sizeof *an), worst = 0.0;
  for (int p = 0; p < np; p++) {
    int64_t n = ir_numel(&b.g.params[p].shape);
    an[p] = malloc(8 * (size_t)n);
    memcpy(an[p], b.v[b.g.grads[p]], 8 * (size_t)n);
  }
  for (int p = 0; p < np; p++) {
    int64_t n = ir_numel(&b.g.params[p].shape);
    double *w = b.v[b.g.params[p].node];
    for (int64_t e = 0; e < n; e += 1 + n / 7) {
      double keep = w[e], h = 1e-5;
      w[e] = keep + h;
      double lp = loss_at(&b);
      w[e] = keep - h;
      double lm = loss_at(&b);
      w[e] = keep;
      double fd = (lp - lm) / (2 * h), err = fabs(fd - an[p][e]) / fmax(fabs(fd), 1e-3);
      worst = err > worst ? err : worst;
    }
    free(an[p]);
  }
  free(an);
  printf("%-34s fd rel err %.3g (%d params)\n", nm, worst, np);
  CHECK_MSG(worst <= 1e-6, "%s: finite differences: %g", nm, worst);
  unbuild(&b);
}

/* The LLVM program's outputs y, then every gradient (param order). */
static int run_llvm(built *b, float ***outs_out, char *msg, size_t msgn) {
  for (int p = 0; p < b->g.nparams; p++) ir_add_output(&b->g, ar_printf(&b->A, "g%d", p), b->g.grads[p]);
  int np = b->g.nparams, no = b->g.noutputs;
  float **ps = calloc((size_t)np + 1, sizeof *ps), **outs = calloc((size_t)no + 1, sizeof *outs);
  for (int p = 0; p < np; p++) {
    int64_t n = ir_numel(&b->g.params[p].shape);
    ps[p] = malloc(4 * (size_t)n);
    for (int64_t e = 0; e < n; e++) ps[p][e] = (float)b->v[b->g.params[p].node][e];
  }
  for (int o = 0; o < no; o++) outs[o] = calloc((size_t)ir_numel(&b->g.nodes[b->g.outputs[o].node].shape), 4);
  cg_program *p = cg_compile(&b->g, NULL, msg, msgn);
  int rc = p && cg_run(p, NULL, (void *const *)ps, (void *const *)outs, NULL, msg, msgn) == 0 ? 0 : -1;
  cg_free(p);
  for (int q = 0; q < np; q++) free(ps[q]);
  free(ps);
  *outs_out = outs;
  return rc;
}

static void free_outs(built *b, float **outs) {
  for (int o = 0; o < b->g.noutputs; o++) free(outs[o]);
  free(outs);
}

/* (2) LLVM against the f32 interpreter */
static void check_llvm(const rcase *c) {
  built b = {0};
  char nm[120], msg[512];
  cname(c, nm, sizeof nm);
  if (build(c, &b)) return unbuild(&b);
  float **outs = NULL;
  if (run_llvm(&b, &outs, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: llvm: %s", nm, msg);
  } else if (ir_interp(&b.g, IR_INTERP_F32, b.v, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: interp: %s", nm, msg);
  } else {
    double worst = 0.0;
    for (int o = 0; o < b.g.noutputs; o++) {
      int id = b.g.outputs[o].node;
      for (int64_t e = 0; e < ir_numel(&b.g.nodes[id].shape); e++) {
        double x = outs[o][e], want = b.v[id][e];
        double err = x == want ? 0.0 : fabs(x - want) / fmax(fabs(want), 0.1);
        if (!(err <= worst)) worst = err;
      }
    }
    printf("%-34s llvm rel err %.3g (%d outputs)\n", nm, worst, b.g.noutputs);
    CHECK_MSG(worst <= 1e-4, "%s: llvm vs interpreter: %g", nm, worst);
  }
  if (outs) free_outs(&b, outs);
  unbuild(&b);
}

/* ||a - b|| / ||b|| */
static double rel_norm(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
  return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static int torch_missing;

static void put_floats(FILE *f, const double *v, int64_t n) {
  for (int64_t e = 0; e < n; e++) {
    float x = (float)v[e];
    fwrite(&x, 4, 1, f);
  }
}

/* (3) LLVM against PyTorch */
static void check_torch(const rcase *c, const char *dir) {
  built b = {0};
  char nm[120], msg[512], in[600], out[600], cmd[1400];
  cname(c, nm, sizeof nm);
  if (torch_missing || build(c, &b)) return unbuild(&b);
  snprintf(in, sizeof in, "%s/in.bin", dir), snprintf(out, sizeof out, "%s/out.bin", dir);
  FILE *f = fopen(in, "wb");
  fprintf(f, "%s %lld %lld %lld %lld %d %d\n", c->op, (long long)c->B, (long long)c->T, (long long)c->in,
          (long long)c->h, c->layers, c->bidir);
  for (int p = 0; p < b.g.nparams; p++)
    if (p != b.xp) fprintf(f, "%s %lld\n", b.g.params[p].name, (long long)ir_numel(&b.g.params[p].shape));
  fprintf(f, "---\n");
  for (int p = 0; p < b.g.nparams; p++)
    if (p != b.xp) put_floats(f, b.v[b.g.params[p].node], ir_numel(&b.g.params[p].shape));
  put_floats(f, b.v[b.g.params[b.xp].node], ir_numel(&b.g.params[b.xp].shape));
  put_floats(f, b.R, ir_numel(&b.g.nodes[b.y].shape));
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/parity_rnn_stack.py %s %s", in, out);
  int st = system(cmd);
  float **outs = NULL;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
    torch_missing = 1;
  } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !(f = fopen(out, "rb"))) {
    CHECK_MSG(0, "%s: tests/parity_rnn_stack.py failed", nm);
  } else if (run_llvm(&b, &outs, msg, sizeof msg)) {
    fclose(f);
    CHECK_MSG(0, "%s: llvm: %s", nm, msg);
  } else {
    /* torch's order: y, the layer's parameters, dx; ours: y, then every param's gradient (x's among them) */
    int np = b.g.nparams;
    int64_t ny = ir_numel(&b.g.nodes[b.y].shape), total = ny;
    for (int p = 0; p < np; p++) total += ir_numel(&b.g.params[p].shape);
    float *want = calloc((size_t)total, 4);
    CHECK(fread(want, 4, (size_t)total, f) == (size_t)total);
    fclose(f);
    double ey = rel_norm(outs[0], want, ny), eg = 0;
    int64_t at = ny;
    for (int p = 0; p <= np; p++) {
      int q = p < np ? p : b.xp; /* the parameters in file order, x last */
      if (p < np && p == b.xp) continue;
      int64_t n = ir_numel(&b.g.params[q].shape);
      double e = rel_norm(outs[1 + q], want + at, n);
      eg = e > eg ? e : eg;
      at += n;
    }
    printf("%-34s torch: y rel err %.3g, worst gradient rel err %.3g\n", nm, ey, eg);
    CHECK_MSG(ey <= 1e-5 && eg <= 1e-4, "%s: PyTorch parity: y %g, gradients %g", nm, ey, eg);
    free(want);
  }
  if (outs) free_outs(&b, outs);
  unbuild(&b);
}

/* Names and shapes, dropout, errors */
static void check_lowering(void) {
  built b = {0};
  char *err = NULL;
  const char *src = "model t\ninput x : f32[2, 5, 3]\n"
                    "y = lstm(x, 4, layers=2, bidirectional=true, dropout=0.25, name=\"enc\")\noutput y\n";
  if (lower(src, &b, &err) == 0) {
    static const char *want[][2] = {
      {"enc.l0.weight_ih", "[3, 16]"},  {"enc.l0.weight_hh", "[4, 16]"},  {"enc.l0.bias", "[16]"},
      {"enc.l0.rev.weight_ih", "[3, 16]"}, {"enc.l0.rev.weight_hh", "[4, 16]"}, {"enc.l0.rev.bias", "[16]"},
      {"enc.l1.weight_ih", "[8, 16]"},  {"enc.l1.weight_hh", "[4, 16]"},  {"enc.l1.bias", "[16]"},
      {"enc.l1.rev.weight_ih", "[8, 16]"}, {"enc.l1.rev.weight_hh", "[4, 16]"}, {"enc.l1.rev.bias", "[16]"},
    };
    CHECK(b.g.nparams == 12);
    for (int i = 0; i < 12 && i < b.g.nparams; i++) {
      char s[64];
      CHECK_STR(b.g.params[i].name, want[i][0]);
      CHECK_STR(ir_shape_str(&b.g.params[i].shape, s, sizeof s), want[i][1]);
    }
    const ir_node *y = &b.g.nodes[b.g.outputs[0].node];
    CHECK(y->shape.rank == 3 && y->shape.d[2] == 8 && y->op == IR_CONCAT);
    int drop = 0, gath = 0;
    for (int i = 0; i < b.g.nnodes; i++) {
      drop += b.g.nodes[i].op == IR_DROPOUT && b.g.nodes[i].attr.f == 0.25;
      gath += b.g.nodes[i].op == IR_GATHER;
    }
    CHECK(drop == 1); /* between the layers only */
    CHECK(gath == 4); /* per layer: into and out of the reverse direction */
  } else {
    CHECK_MSG(0, "%s", err ? err : "?");
  }
  free(err), err = NULL;
  unbuild(&b);
  memset(&b, 0, sizeof b);
  CHECK(lower("model t\ninput x : f32[2, 5, 3]\ny = gru(x, 4, name=\"g\")\noutput y\n", &b, &err) == 0);
  CHECK(b.g.nparams == 4 && !strcmp(b.g.params[0].name, "g.weight_ih") && !strcmp(b.g.params[3].name, "g.bias_hh"));
  free(err), err = NULL;
  unbuild(&b);
  static const char *bad[][2] = {
    {"y = gru(x, 4, layers=0)", "'layers' of 'gru' must be at least 1"},
    {"y = rnn(x, 4, layers=2, dropout=1)", "dropout probability must be in [0, 1)"},
    {"y = lstm(x, 4, bidirectional=1)", "bidirectional"},
    {"y = lstm(x, 4, layers=65)", "at most 64"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char src2[300];
    snprintf(src2, sizeof src2, "model t\ninput x : f32[2, 5, 3]\n%s\noutput y\n", bad[i][0]);
    memset(&b, 0, sizeof b);
    int rc = lower(src2, &b, &err);
    CHECK_MSG(rc == -1 && err && strstr(err, bad[i][1]) && strstr(err, "t.nn:3:"), "%s: got %s", bad[i][0],
              err ? err : "success");
    free(err), err = NULL;
    unbuild(&b);
  }
}

/* dropout= is left out of forward runs: the same y as without it */
static void check_dropout_inference(void) {
  rcase a = {"gru", 3, 1, 2, 4, 3, 5, 0, 0.0}, d = a;
  d.dropout = 0.5;
  built x = {0}, y = {0};
  char msg[512];
  if (build(&a, &x) == 0 && build(&d, &y) == 0) {
    for (int p = 0; p < x.g.nparams; p++)
      memcpy(y.v[y.g.params[p].node], x.v[x.g.params[p].node], 8 * (size_t)ir_numel(&x.g.params[p].shape));
    CHECK(ir_interp(&x.g, IR_INTERP_F64, x.v, msg, sizeof msg) == 0);
    CHECK(ir_interp(&y.g, IR_INTERP_F64, y.v, msg, sizeof msg) == 0);
    int64_t n = ir_numel(&x.g.nodes[x.y].shape), same = 1;
    for (int64_t e = 0; e < n; e++) same &= x.v[x.y][e] == y.v[y.y][e];
    CHECK_MSG(same, "dropout changed a forward run");
  }
  unbuild(&x), unbuild(&y);
}

int main(void) {
  rcase cases[] = {
    {"rnn", 2, 1, 2, 4, 3, 5, 1, 0}, {"lstm", 2, 1, 2, 4, 3, 5, 1, 0}, {"gru", 2, 1, 2, 4, 3, 5, 1, 0},
    {"gru", 3, 0, 2, 4, 3, 5, 1, 0}, {"lstm", 1, 1, 2, 4, 3, 5, 1, 0},
    {"rnn", 2, 1, 3, 40, 7, 9, 0, 0}, {"lstm", 2, 1, 3, 40, 7, 9, 0, 0}, {"gru", 2, 1, 3, 40, 7, 9, 0, 0},
  };
  check_lowering();
  check_dropout_inference();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].fd) check_fd(&cases[i]);
    check_llvm(&cases[i]);
  }
  char dir[] = "/tmp/lathe_rnnstack_XXXXXX";
  if (access("/usr/bin/python3", X_OK) != 0 || !mkdtemp(dir)) {
    torch_missing = 1;
  } else {
    rcase tc[] = {
      {"rnn", 2, 1, 3, 12, 5, 16, 0, 0}, {"lstm", 2, 1, 3, 12, 5, 16, 0, 0}, {"gru", 2, 1, 3, 12, 5, 16, 0, 0},
      {"gru", 2, 0, 3, 12, 5, 16, 0, 0}, {"lstm", 3, 1, 2, 9, 4, 8, 0, 0},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) check_torch(&tc[i], dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
  }
  if (torch_missing)
    printf("SKIPPED: PyTorch parity (needs /usr/bin/python3 with Debian's python3-torch)\n");
  return TEST_REPORT();
}
