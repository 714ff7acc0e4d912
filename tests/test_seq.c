/* test_seq.c -- the fused sequence layers and their fused backward ops
 * (ATTENTION_GRAD, RNN_GRAD, LSTM_GRAD, GRU_GRAD; passes/autodiff.c makes
 * them, ir/interp_seq_grad.c and rt/rt_seq.c compute them).
 *
 * Per case: the layer on parameters, loss = sum(y * R) with fixed random R,
 * autodiff. (1) finite differences: every parameter gradient of the f64
 * interpreter against central differences of the loss, on a sample of
 * elements (relative error <= 1e-6, floor 1e-3). (2) the LLVM backend against
 * the interpreter in f32 mode: the forward result and every backward op's
 * result, max relative error <= 1e-4 (abs floor 0.1). Sizes include T > 64
 * and T not a multiple of the 64-row tiles, so the flash kernels' tile
 * loops, the causal tile skipping and partial tiles all run.
 * (3) parity with PyTorch (tests/parity_seq.py: nn.MultiheadAttention, RNN,
 * LSTM, GRU with the same weights): the LLVM program's y and parameter
 * gradients against torch's, ||lathe - torch|| / ||torch|| <= 1e-5 for y and
 * 1e-4 per gradient. Skipped LOUDLY (SKIPPED on stdout) without torch.
 * The forward-only attention cases (no autodiff: an inference program, whose
 * single work item, B T <= 256, runs rt_seq.c's att_fwd_wide: heads whole
 * with an exact softmax up to 1024 keys, the flash tiles beyond) get (2) on
 * the forward alone.
 * The "saved" attention cases run passes/attnsave.c first: attention_save
 * and attention_grad_saved in (1) and (2), the saved pack (qkv, context,
 * logsumexp) included in the comparison. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct {
  const char *name;
  int op, nin;
  ir_shape sh[5];
  ir_attr attr;
  int fd;   /* run the finite-difference check (small cases only) */
  int save; /* attention: run passes/attnsave.c after autodiff */
  int fwd;  /* no loss, no autodiff: the forward alone */
} scase;

typedef struct {
  arena A;
  ir_graph g;
  int y;
  double **v;
} built;

static int build_values(built *b);

static int build(const scase *c, built *b) {
  ar_init(&b->A);
  ir_graph_init(&b->g, &b->A, "t");
  char msg[512];
  ir_loc loc = {0};
  int in[5];
  for (int j = 0; j < c->nin; j++)
    in[j] = ir_add_param(&b->g, ar_printf(&b->A, "p%d", j), IR_F32, &c->sh[j], IR_INIT_ZEROS, 0, 1, 1, loc);
  b->y = ir_add(&b->g, c->op, in, c->nin, &c->attr, loc, msg, sizeof msg);
  CHECK_MSG(b->y >= 0, "%s: %s", c->name, msg);
  if (b->y < 0) return -1;
  if (c->fwd) {
    ir_add_output(&b->g, "y", b->y);
    return build_values(b);
  }
  ir_shape sy = b->g.nodes[b->y].shape;
  int64_t cnt = ir_numel(&sy);
  int r = ir_add_const(&b->g, IR_F32, 0, loc);
  double *rv = ar_alloc(&b->A, sizeof(double) * (size_t)cnt);
  for (int64_t e = 0; e < cnt; e++) rv[e] = (double)(float)(urand() - 0.3);
  b->g.nodes[r].shape = sy, b->g.nodes[r].data = rv;
  int m = ir_add(&b->g, IR_MUL, (int[]){b->y, r}, 2, NULL, loc, msg, sizeof msg);
  ir_attr all = {0};
  all.axis = -1;
  b->g.loss = ir_add(&b->g, IR_SUM, &m, 1, &all, loc, msg, sizeof msg);
  CHECK_MSG(ad_backward(&b->g, NULL, 0, 0, msg, sizeof msg) == 0, "%s: %s", c->name, msg);
  ir_add_output(&b->g, "y", b->y);
  if (c->save) { /* the pair becomes attention_save + attention_grad_saved; y moves */
    CHECK_MSG(ps_attnsave(&b->g, msg, sizeof msg) == 1, "%s: attnsave: %s", c->name, msg);
    CHECK_MSG(ir_verify(&b->g, msg, sizeof msg) == 0, "%s: %s", c->name, msg);
    b->y = b->g.outputs[b->g.noutputs - 1].node;
  }
  return build_values(b);
}

/* the parameters' random values (f32-representable) */
static int build_values(built *b) {
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
  ar_free(&b->A);
}

static double loss_at(built *b) {
  char msg[512];
  ir_interp_release(&b->g, b->v);
  if (ir_interp(&b->g, IR_INTERP_F64, b->v, msg, sizeof msg)) return NAN;
  return b->v[b->g.loss][0];
}

/* (1) autodiff in f64 against central differences */
static void check_fd(const scase *c) {
  built b = {0};
  if (build(c, &b)) return unbuild(&b);
  char msg[512];
  CHECK_MSG(ir_interp(&b.g, IR_INTERP_F64, b.v, msg, sizeof msg) == 0, "%s: %s", c->name, msg);
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
    for (int64_t e = 0; e < n; e += 1 + n / 13) {
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
  printf("%-28s fd rel err %.3g\n", c->name, worst);
  CHECK_MSG(worst <= 1e-6, "%s: finite differences: %g", c->name, worst);
  unbuild(&b);
}

/* (2) LLVM against the f32 interpreter: the forward and the backward ops */
static void check_llvm(const scase *c) {
  built b = {0};
  if (build(c, &b)) return unbuild(&b);
  char msg[512];
  for (int i = 0; i < b.g.nnodes; i++)
    if (b.g.nodes[i].op >= IR_ATTENTION_GRAD && b.g.nodes[i].op <= IR_ATTENTION_GRAD_SAVED)
      ir_add_output(&b.g, ar_printf(&b.A, "n%d", i), i);
  int np = b.g.nparams, no = b.g.noutputs;
  void **ps = calloc((size_t)np, sizeof *ps), **outs = calloc((size_t)no, sizeof *outs);
  for (int p = 0; p < np; p++) {
    int64_t n = ir_numel(&b.g.params[p].shape);
    float *f = malloc(4 * (size_t)n);
    for (int64_t e = 0; e < n; e++) f[e] = (float)b.v[b.g.params[p].node][e];
    ps[p] = f;
  }
  for (int o = 0; o < no; o++) outs[o] = calloc((size_t)ir_numel(&b.g.nodes[b.g.outputs[o].node].shape), 4);
  cg_program *p = NULL;
  double worst = 0.0;
  if (ir_interp(&b.g, IR_INTERP_F32, b.v, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: interp: %s", c->name, msg);
  } else if (!(p = cg_compile(&b.g, NULL, msg, sizeof msg)) || cg_run(p, NULL, ps, outs, NULL, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: llvm: %s", c->name, msg);
  } else {
    for (int o = 0; o < no; o++) {
      int id = b.g.outputs[o].node;
      for (int64_t e = 0; e < ir_numel(&b.g.nodes[id].shape); e++) {
        double x = ((float *)outs[o])[e], want = b.v[id][e];
        double err = x == want ? 0.0 : fabs(x - want) / fmax(fabs(want), 0.1);
        if (!(err <= worst)) worst = err;
      }
    }
    printf("%-28s llvm rel err %.3g (%d outputs)\n", c->name, worst, no);
    CHECK_MSG(worst <= 1e-4, "%s: llvm vs interpreter: %g", c->name, worst);
  }
  cg_free(p);
  for (int q = 0; q < np; q++) free(ps[q]);
  for (int o = 0; o < no; o++) free(outs[o]);
  free(ps), free(outs);
  unbuild(&b);
}

/* ||a - b|| / ||b|| */
static double rel_norm(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
  return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static int torch_missing;

/* (3) LLVM against PyTorch: y and every parameter's gradient */
static void check_torch(const scase *c, const char *dir) {
  built b = {0};
  if (torch_missing || build(c, &b)) return unbuild(&b);
  char msg[512], in[600], out[600], cmd[1400]; /* outputs: y (build's), then the gradients */
  for (int p = 0; p < b.g.nparams; p++) ir_add_output(&b.g, ar_printf(&b.A, "g%d", p), b.g.grads[p]);
  snprintf(in, sizeof in, "%s/in.bin", dir), snprintf(out, sizeof out, "%s/out.bin", dir);
  FILE *f = fopen(in, "wb");
  const ir_shape *sx = &c->sh[0];
  int att = c->op == IR_ATTENTION;
  fprintf(f, "%s %lld %lld %lld %lld %lld %d\n", att ? "attention" : ir_ops[c->op].name, (long long)sx->d[0],
          (long long)sx->d[1], (long long)sx->d[2], (long long)(att ? 0 : c->sh[2].d[0]), (long long)c->attr.heads,
          c->attr.causal);
  int np = b.g.nparams, no = b.g.noutputs;
  int64_t total = 0;
  void **ps = calloc((size_t)np, sizeof *ps), **outs = calloc((size_t)no, sizeof *outs);
  for (int p = 0; p < np; p++) {
    int64_t n = ir_numel(&b.g.params[p].shape);
    float *w = malloc(4 * (size_t)n);
    for (int64_t e = 0; e < n; e++) w[e] = (float)b.v[b.g.params[p].node][e];
    fwrite(w, 4, (size_t)n, f);
    ps[p] = w;
  }
  const ir_node *rn = &b.g.nodes[b.g.nodes[b.g.loss].in[0]];
  const ir_node *rc = &b.g.nodes[rn->in[1]]; /* R */
  for (int64_t e = 0; e < ir_numel(&rc->shape); e++) {
    float r = (float)rc->data[e];
    fwrite(&r, 4, 1, f);
  }
  fclose(f);
  for (int o = 0; o < no; o++) {
    total += ir_numel(&b.g.nodes[b.g.outputs[o].node].shape);
    outs[o] = calloc((size_t)ir_numel(&b.g.nodes[b.g.outputs[o].node].shape), 4);
  }
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/parity_seq.py %s %s", in, out);
  int st = system(cmd);
  float *want = calloc((size_t)total, 4);
  cg_program *p = NULL;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
    torch_missing = 1;
  } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !(f = fopen(out, "rb"))) {
    CHECK_MSG(0, "%s: tests/parity_seq.py failed", c->name);
  } else {
    CHECK(fread(want, 4, (size_t)total, f) == (size_t)total);
    fclose(f);
    if (!(p = cg_compile(&b.g, NULL, msg, sizeof msg)) || cg_run(p, NULL, ps, outs, NULL, msg, sizeof msg)) {
      CHECK_MSG(0, "%s: llvm: %s", c->name, msg);
    } else {
      int64_t at = 0;
      double ey = 0, eg = 0;
      for (int o = 0; o < no; o++) {
        int64_t n = ir_numel(&b.g.nodes[b.g.outputs[o].node].shape);
        double e = rel_norm(outs[o], want + at, n);
        if (o == 0) ey = e;
        else eg = e > eg ? e : eg;
        at += n;
      }
      printf("%-28s torch: y rel err %.3g, worst gradient rel err %.3g\n", c->name, ey, eg);
      CHECK_MSG(ey <= 1e-5 && eg <= 1e-4, "%s: PyTorch parity: y %g, gradients %g", c->name, ey, eg);
    }
  }
  cg_free(p);
  free(want);
  for (int q = 0; q < np; q++) free(ps[q]);
  for (int o = 0; o < no; o++) free(outs[o]);
  free(ps), free(outs);
  unbuild(&b);
}

static ir_shape S3(int64_t a, int64_t b, int64_t c) { return (ir_shape){.rank = 3, .d = {a, b, c}}; }
static ir_shape S2(int64_t a, int64_t b) { return (ir_shape){.rank = 2, .d = {a, b}}; }
static ir_shape S1(int64_t a) { return (ir_shape){.rank = 1, .d = {a}}; }

static scase attn(const char *name, int64_t B, int64_t T, int64_t d, int64_t H, int causal, int fd) {
  scase c = {name, IR_ATTENTION, 5, {S3(B, T, d), S2(d, 3 * d), S1(3 * d), S2(d, d), S1(d)}, {0}, fd, 0, 0};
  c.attr.heads = H, c.attr.causal = causal;
  return c;
}

static scase attn_saved(const char *name, int64_t B, int64_t T, int64_t d, int64_t H, int causal, int fd) {
  scase c = attn(name, B, T, d, H, causal, fd);
  c.save = 1;
  return c;
}

/* the forward alone (see the top) */
static scase attn_fwd(const char *name, int64_t B, int64_t T, int64_t d, int64_t H, int causal) {
  scase c = attn(name, B, T, d, H, causal, 0);
  c.fwd = 1;
  return c;
}

static scase rec(const char *name, int op, int64_t B, int64_t T, int64_t in, int64_t h, int fd) {
  int G = op == IR_LSTM ? 4 : op == IR_GRU ? 3 : 1;
  scase c = {name, op, op == IR_GRU ? 5 : 4, {S3(B, T, in), S2(in, G * h), S2(h, G * h), S1(G * h), S1(G * h)},
             {0}, fd, 0, 0};
  return c;
}

int main(void) {
  scase cases[] = {
    attn("attention causal", 2, 5, 6, 2, 1, 1),
    attn("attention", 2, 5, 6, 3, 0, 1),
    attn("attention causal T=150", 2, 150, 16, 2, 1, 0),
    attn("attention T=130", 1, 130, 12, 3, 0, 0),
    attn_saved("attention causal, saved", 2, 5, 6, 2, 1, 1),
    attn_saved("attention, saved", 2, 5, 6, 3, 0, 1),
    attn_saved("attention causal T=150, saved", 2, 150, 16, 2, 1, 0),
    attn_saved("attention T=130, saved", 1, 130, 12, 3, 0, 0),
    attn_fwd("attention causal B=1 T=150, fwd", 1, 150, 16, 2, 1),
    attn_fwd("attention B=1 T=130, fwd", 1, 130, 12, 3, 0),
    attn_fwd("attention causal B=2 T=100, fwd", 2, 100, 16, 4, 1),
    attn_fwd("attention causal B=1 T=1100, fwd", 1, 1100, 8, 2, 1),
    rec("rnn", IR_RNN, 2, 4, 3, 5, 1),
    rec("lstm", IR_LSTM, 2, 4, 3, 5, 1),
    rec("gru", IR_GRU, 2, 4, 3, 5, 1),
    rec("rnn T=40", IR_RNN, 3, 40, 7, 9, 0),
    rec("lstm T=40", IR_LSTM, 3, 40, 7, 9, 0),
    rec("gru T=40", IR_GRU, 3, 40, 7, 9, 0),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].fd) check_fd(&cases[i]);
    check_llvm(&cases[i]);
  }
  char dir[] = "/tmp/lathe_seq_XXXXXX";
  if (access("/usr/bin/python3", X_OK) != 0 || !mkdtemp(dir)) {
    torch_missing = 1;
  } else {
    scase tc[] = {
      attn("attention causal", 2, 70, 16, 4, 1, 0), attn("attention", 2, 9, 12, 3, 0, 0),
      attn_saved("attention causal, saved", 2, 70, 16, 4, 1, 0),
      rec("rnn", IR_RNN, 3, 12, 5, 16, 0),           rec("lstm", IR_LSTM, 3, 12, 5, 16, 0),
      rec("gru", IR_GRU, 3, 12, 5, 16, 0),
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
