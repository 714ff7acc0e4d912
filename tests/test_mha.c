/* test_mha.c -- attention with a padding mask, cross-attention, rotary
 * embeddings and grouped key/value heads: the op mha and its fused backward
 * mha_grad (passes/autodiff.c makes it; ir/interp_mha.c and rt/rt_mha.c,
 * called by codegen/llvm/cg_mha.c, compute them).
 *
 * Per case: mha on parameters (x, wq, bq, the context c unless the case is
 * self-attention, where c is x, wkv, bkv, wp, bp) and a constant mask,
 * loss = sum(y * R) with fixed random R, autodiff. (1) finite differences:
 * every parameter gradient of the f64 interpreter against central
 * differences, on a sample of elements (relative error <= 1e-6, floor
 * 1e-3). (2) the LLVM backend against the f32 interpreter: y and
 * mha_grad's result, max relative error <= 1e-4 (abs floor 0.1); sizes
 * include Tq > 64 (two query tiles) and a batch row whose keys are all
 * masked (its context is zero); some cases have an inner width heads x hd
 * other than d (head_dim=: wq [d, e], wp [e, d]). (3) parity with PyTorch in float64 plain ops
 * (tests/parity_mha.py): the LLVM program's y (||lathe - torch|| / ||torch||
 * <= 1e-5) and every parameter gradient (<= 1e-4), and the f64
 * interpreter's (<= 1e-6: torch's values come back as f32). Skipped LOUDLY without torch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/llvm/cg.h"
#include "ir.h"
#include "passes/passes.h"
#include "test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

enum { MK_NONE, MK_LENGTHS, MK_KEYS, MK_FULL };

typedef struct {
  const char *name;
  int64_t B, Tq, Tk, d, dc, H, K;
  int causal, rope, mkind, self;
  int empty; /* lengths: batch row 0 sees no key (not for PyTorch: NaN there) */
  int fd;
  int64_t hd; /* the head width (head_dim=): 0 for d / H; heads x hd is the inner width */
} mcase;

typedef struct {
  arena A;
  ir_graph g;
  int y, mask;
  double **v;
} built;

/* the mask's values: every query row sees key 0 unless c->empty */
static double *mask_values(const mcase *c, arena *A, ir_shape *s, ir_dtype *t) {
  int64_t n = c->mkind == MK_LENGTHS ? c->B : c->mkind == MK_KEYS ? c->B * c->Tk : c->B * c->Tq * c->Tk;
  double *m = ar_alloc(A, sizeof(double) * (size_t)n);
  *t = c->mkind == MK_LENGTHS ? IR_I32 : IR_BOOL;
  *s = c->mkind == MK_LENGTHS ? (ir_shape){1, {c->B}}
     : c->mkind == MK_KEYS    ? (ir_shape){2, {c->B, c->Tk}}
                              : (ir_shape){3, {c->B, c->Tq, c->Tk}};
  for (int64_t e = 0; e < n; e++) {
    if (c->mkind == MK_LENGTHS) m[e] = e == 0 && c->empty ? 0 : 1 + (int64_t)(urand() * (double)c->Tk);
    else m[e] = e % c->Tk == 0 || urand() < 0.6;
  }
  return m;
}

static int build(const mcase *c, built *b) {
  ar_init(&b->A);
  ir_graph_init(&b->g, &b->A, "t");
  char msg[512];
  ir_loc loc = {0};
  int64_t hd = c->hd ? c->hd : c->d / c->H, e = c->H * hd, dk = c->K * hd;
  ir_shape sh[8] = {{3, {c->B, c->Tq, c->d}}, {2, {c->d, e}}, {1, {e}}, {3, {c->B, c->Tk, c->dc}},
                    {2, {c->dc, 2 * dk}},     {1, {2 * dk}},  {2, {e, c->d}}, {1, {c->d}}};
  int in[9], nin = 8;
  for (int j = 0; j < 8; j++)
    in[j] = j == 3 && c->self ? in[0]
                              : ir_add_param(&b->g, ar_printf(&b->A, "p%d", j), IR_F32, &sh[j], IR_INIT_ZEROS, 0, 1,
                                             1, loc);
  b->mask = -1;
  if (c->mkind) {
    ir_shape ms;
    ir_dtype mt;
    const double *mv = mask_values(c, &b->A, &ms, &mt);
    b->mask = in[nin++] = ir_add_const(&b->g, mt, 0, loc);
    b->g.nodes[b->mask].shape = ms, b->g.nodes[b->mask].data = mv;
  }
  ir_attr at = {0};
  at.heads = c->H, at.k = c->K, at.causal = c->causal, at.i = c->rope;
  b->y = ir_add(&b->g, IR_MHA, in, nin, &at, loc, msg, sizeof msg);
  CHECK_MSG(b->y >= 0, "%s: %s", c->name, msg);
  if (b->y < 0) return -1;
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
static void check_fd(const mcase *c) {
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
    for (int64_t e = 0; e < n; e += 1 + n / 11) {
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
  printf("%-34s fd rel err %.3g\n", c->name, worst);
  CHECK_MSG(worst <= 1e-6, "%s: finite differences: %g", c->name, worst);
  unbuild(&b);
}

/* the parameters as f32 arrays for the LLVM program */
static void **f32_params(const built *b) {
  void **ps = calloc((size_t)b->g.nparams, sizeof *ps);
  for (int p = 0; p < b->g.nparams; p++) {
    int64_t n = ir_numel(&b->g.params[p].shape);
    float *f = malloc(4 * (size_t)n);
    for (int64_t e = 0; e < n; e++) f[e] = (float)b->v[b->g.params[p].node][e];
    ps[p] = f;
  }
  return ps;
}

/* run the LLVM program of b's graph: outs[o] (allocated here) per output; 0 ok */
static int run_llvm(const mcase *c, built *b, void **ps, void ***outs) {
  char msg[512];
  int no = b->g.noutputs;
  *outs = calloc((size_t)no, sizeof **outs);
  for (int o = 0; o < no; o++) (*outs)[o] = calloc((size_t)ir_numel(&b->g.nodes[b->g.outputs[o].node].shape), 4);
  cg_program *p = cg_compile(&b->g, NULL, msg, sizeof msg);
  int rc = !p || cg_run(p, NULL, ps, *outs, NULL, msg, sizeof msg) ? -1 : 0;
  CHECK_MSG(rc == 0, "%s: llvm: %s", c->name, msg);
  cg_free(p);
  return rc;
}

static void free_all(void **a, int n) {
  for (int i = 0; i < n; i++) free(a[i]);
  free(a);
}

/* (2) LLVM against the f32 interpreter: y and mha_grad's result */
static void check_llvm(const mcase *c) {
  built b = {0};
  if (build(c, &b)) return unbuild(&b);
  char msg[512];
  int grads = 0;
  for (int i = 0; i < b.g.nnodes; i++)
    if (b.g.nodes[i].op == IR_MHA_GRAD) ir_add_output(&b.g, ar_printf(&b.A, "n%d", i), i), grads++;
  CHECK_MSG(grads == 1, "%s: %d mha_grad nodes", c->name, grads);
  void **ps = f32_params(&b), **outs = NULL;
  double worst = 0.0;
  if (ir_interp(&b.g, IR_INTERP_F32, b.v, msg, sizeof msg)) {
    CHECK_MSG(0, "%s: interp: %s", c->name, msg);
  } else if (run_llvm(c, &b, ps, &outs) == 0) {
    for (int o = 0; o < b.g.noutputs; o++) {
      int id = b.g.outputs[o].node;
      for (int64_t e = 0; e < ir_numel(&b.g.nodes[id].shape); e++) {
        double x = ((float *)outs[o])[e], want = b.v[id][e];
        double err = x == want ? 0.0 : fabs(x - want) / fmax(fabs(want), 0.1);
        if (!(err <= worst)) worst = err;
      }
    }
    printf("%-34s llvm rel err %.3g\n", c->name, worst);
    CHECK_MSG(worst <= 1e-4, "%s: llvm vs interpreter: %g", c->name, worst);
  }
  if (outs) free_all(outs, b.g.noutputs);
  free_all(ps, b.g.nparams);
  unbuild(&b);
}

static double rel_norm(const double *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
  return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static int torch_missing;

/* the parity case file: header, parameters, mask, R (parity_mha.py) */
static void write_case(const mcase *c, const built *b, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fprintf(f, "%lld %lld %lld %lld %lld %lld %lld %d %d %d %d %lld\n", (long long)c->B, (long long)c->Tq,
          (long long)c->Tk, (long long)c->d, (long long)c->dc, (long long)c->H, (long long)c->K, c->causal, c->rope,
          c->mkind, c->self, (long long)c->hd);
  for (int p = 0; p < b->g.nparams; p++)
    for (int64_t e = 0; e < ir_numel(&b->g.params[p].shape); e++) {
      float w = (float)b->v[b->g.params[p].node][e];
      fwrite(&w, 4, 1, f);
    }
  const ir_node *nodes = b->g.nodes;
  if (b->mask >= 0)
    for (int64_t e = 0; e < ir_numel(&nodes[b->mask].shape); e++) {
      float m = (float)nodes[b->mask].data[e];
      fwrite(&m, 4, 1, f);
    }
  const ir_node *rc = &nodes[nodes[nodes[b->g.loss].in[0]].in[1]]; /* R */
  for (int64_t e = 0; e < ir_numel(&rc->shape); e++) {
    float r = (float)rc->data[e];
    fwrite(&r, 4, 1, f);
  }
  fclose(f);
}

/* worst rel_norm of got (one array per output, f32 or f64) against want */
static void compare(const built *b, void **got, int f64, const float *want, double *ey, double *eg) {
  int64_t at = 0;
  *ey = *eg = 0;
  for (int o = 0; o < b->g.noutputs; o++) {
    int64_t n = ir_numel(&b->g.nodes[b->g.outputs[o].node].shape);
    double *g = malloc(8 * (size_t)n);
    for (int64_t e = 0; e < n; e++) g[e] = f64 ? ((double *)got[o])[e] : ((float *)got[o])[e];
    double e = rel_norm(g, want + at, n);
    free(g);
    if (o == 0) *ey = e;
    else *eg = e > *eg ? e : *eg;
    at += n;
  }
}

/* (3) LLVM and the f64 interpreter against PyTorch: y and every gradient */
static void check_torch(const mcase *c, const char *dir) {
  built b = {0};
  if (torch_missing || build(c, &b)) return unbuild(&b);
  char msg[512], in[600], out[600], cmd[1400];
  for (int p = 0; p < b.g.nparams; p++) ir_add_output(&b.g, ar_printf(&b.A, "g%d", p), b.g.grads[p]);
  snprintf(in, sizeof in, "%s/in.bin", dir), snprintf(out, sizeof out, "%s/out.bin", dir);
  write_case(c, &b, in);
  int64_t total = 0;
  for (int o = 0; o < b.g.noutputs; o++) total += ir_numel(&b.g.nodes[b.g.outputs[o].node].shape);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/parity_mha.py %s %s", in, out);
  int st = system(cmd);
  float *want = calloc((size_t)total, 4);
  void **ps = f32_params(&b), **outs = NULL;
  FILE *f = NULL;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
    torch_missing = 1;
  } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !(f = fopen(out, "rb"))) {
    CHECK_MSG(0, "%s: tests/parity_mha.py failed", c->name);
  } else {
    CHECK(fread(want, 4, (size_t)total, f) == (size_t)total);
    fclose(f);
    double ey, eg, iy, ig;
    if (run_llvm(c, &b, ps, &outs) == 0) {
      compare(&b, outs, 0, want, &ey, &eg);
      CHECK_MSG(ir_interp(&b.g, IR_INTERP_F64, b.v, msg, sizeof msg) == 0, "%s: %s", c->name, msg);
      void **iv = calloc((size_t)b.g.noutputs, sizeof *iv);
      for (int o = 0; o < b.g.noutputs; o++) iv[o] = b.v[b.g.outputs[o].node];
      compare(&b, iv, 1, want, &iy, &ig);
      free(iv);
      printf("%-34s torch: llvm y %.3g, grads %.3g; interp y %.3g, grads %.3g\n", c->name, ey, eg, iy, ig);
      CHECK_MSG(ey <= 1e-5 && eg <= 1e-4, "%s: PyTorch parity (llvm): y %g, gradients %g", c->name, ey, eg);
      CHECK_MSG(iy <= 1e-6 && ig <= 1e-6, "%s: PyTorch parity (interp f64): y %g, gradients %g", c->name, iy, ig);
    }
  }
  free(want);
  if (outs) free_all(outs, b.g.noutputs);
  free_all(ps, b.g.nparams);
  unbuild(&b);
}

/* name, B, Tq, Tk, d, dc, H, K, causal, rope, mask kind, self, empty, fd, head width (0: d / H) */
static const mcase cases[] = {
  {"self, lengths", 2, 5, 5, 8, 8, 2, 2, 0, 0, MK_LENGTHS, 1, 0, 1, 0},
  {"self causal, bool keys", 2, 5, 5, 8, 8, 2, 2, 1, 0, MK_KEYS, 1, 0, 1, 0},
  {"self, bool [B,T,T]", 2, 4, 4, 6, 6, 3, 3, 0, 0, MK_FULL, 1, 0, 1, 0},
  {"cross, lengths", 2, 4, 6, 8, 5, 2, 2, 0, 0, MK_LENGTHS, 0, 0, 1, 0},
  {"cross causal, no mask", 2, 6, 4, 8, 5, 4, 4, 1, 0, MK_NONE, 0, 0, 1, 0},
  {"self rope causal", 2, 5, 5, 8, 8, 2, 2, 1, 1, MK_NONE, 1, 0, 1, 0},
  {"cross rope, bool keys", 2, 4, 6, 8, 6, 2, 2, 0, 1, MK_KEYS, 0, 0, 1, 0},
  {"self gqa K=2 of 4, lengths", 2, 5, 5, 16, 16, 4, 2, 1, 0, MK_LENGTHS, 1, 0, 1, 0},
  {"self mqa K=1 rope", 2, 5, 5, 12, 12, 3, 1, 0, 1, MK_NONE, 1, 0, 1, 0},
  {"cross gqa rope causal, full mask", 2, 5, 7, 16, 10, 4, 2, 1, 1, MK_FULL, 0, 0, 1, 0},
  {"lengths, row 0 sees nothing", 2, 4, 5, 8, 6, 2, 1, 0, 0, MK_LENGTHS, 0, 1, 1, 0},
  {"self causal T=150 gqa rope lengths", 2, 150, 150, 16, 16, 4, 2, 1, 1, MK_LENGTHS, 1, 0, 0, 0},
  {"cross Tq=130 Tk=70 full mask", 2, 130, 70, 12, 8, 3, 1, 0, 0, MK_FULL, 0, 0, 0, 0},
  /* an inner width other than d (head_dim=, a model whose heads were pruned) */
  {"self causal, 2 heads of 4 in d=16", 2, 5, 5, 16, 16, 2, 2, 1, 0, MK_NONE, 1, 0, 1, 4},
  {"self rope gqa, 4 heads of 6 in d=8", 2, 5, 5, 8, 8, 4, 2, 1, 1, MK_LENGTHS, 1, 0, 1, 6},
  {"cross, 3 heads of 2 in d=8, keys", 2, 4, 6, 8, 5, 3, 3, 0, 0, MK_KEYS, 0, 0, 1, 2},
  {"self causal T=100, 3 heads of 8 in d=16", 2, 100, 100, 16, 16, 3, 3, 1, 0, MK_NONE, 1, 0, 0, 8},
};

/* parity cases: every option, no row without keys */
static const mcase torch_cases[] = {
  {"self causal, lengths", 3, 9, 9, 16, 16, 4, 4, 1, 0, MK_LENGTHS, 1, 0, 0, 0},
  {"cross, bool keys", 2, 7, 11, 12, 10, 3, 3, 0, 0, MK_KEYS, 0, 0, 0, 0},
  {"self rope gqa, bool [B,T,T]", 2, 70, 70, 16, 16, 4, 2, 1, 1, MK_FULL, 1, 0, 0, 0},
  {"cross rope mqa causal, lengths", 2, 8, 10, 16, 12, 4, 1, 1, 1, MK_LENGTHS, 0, 0, 0, 0},
  {"self causal, 2 heads of 8 in d=24", 2, 9, 9, 24, 24, 2, 2, 1, 0, MK_NONE, 1, 0, 0, 8},
  {"self rope, 6 heads of 4 in d=16, lengths", 2, 9, 9, 16, 16, 6, 6, 1, 1, MK_LENGTHS, 1, 0, 0, 4},
};

int main(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].fd) check_fd(&cases[i]);
    check_llvm(&cases[i]);
  }
  char dir[] = "/tmp/lathe_mha_XXXXXX";
  if (access("/usr/bin/python3", X_OK) != 0 || !mkdtemp(dir)) {
    torch_missing = 1;
  } else {
    for (size_t i = 0; i < sizeof torch_cases / sizeof torch_cases[0]; i++) check_torch(&torch_cases[i], dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
  }
  if (torch_missing) printf("SKIPPED: PyTorch parity (needs /usr/bin/python3 with Debian's python3-torch)\n");
  return TEST_REPORT();
}
