/* test_plan.c -- the kernel plan (plan/).
 *
 * - On every example model, forward and training step (forward, backward,
 *   optimizer), at -O0 and -O2: the plan verifies, and the plan executor
 *   (the interpreter's kernels on the plan's buffers: one arena, the same
 *   offsets, aliases and in-place writes) gives the unplanned interpreter's
 *   outputs and loss bit for bit.
 * - The plan makes the kernels the LLVM backend made before it moved out of
 *   codegen/llvm (kernel counts and arena sizes pinned per example), and the
 *   backend renders exactly the plan's kernels.
 * - The verifier rejects hand-made bad plans (two live tensors overlapping, a
 *   read before the write, an in-place write over a value read later) with a
 *   message naming the tensors, and the executor's results on such a plan
 *   differ from the interpreter's. */
#include <stdlib.h>
#include <string.h>

#include "codegen/llvm/cg.h"
#include "frontend/frontend.h"
#include "lathe.h"
#include "passes/passes.h"
#include "plan/plan.h"
#include "rt/lathe_rt.h"
#include "runtime/program.h"
#include "tests/test.h"

static lathe_program *compile(const char *path, int64_t batch, int train, int level) {
  lathe_error err = {0};
  lathe_model *m = lathe_model_load(path, &err);
  CHECK_MSG(m != NULL, "%s", err.message ? err.message : "?");
  if (!m) return NULL;
  CHECK(lathe_model_bind(m, "batch", batch, &err) == 0);
  lathe_options o = {.backend = LATHE_BACKEND_INTERP, .opt_level_set = 1, .opt_level = level};
  lathe_program *p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
  CHECK_MSG(p != NULL, "%s: %s", path, err.message ? err.message : "?");
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* Values of g's inputs and parameters (valid ids and labels: small
 * integers; a step counter of at least 1). */
static double **leaf_values(const ir_graph *g) {
  double **v = calloc((size_t)g->nnodes + 1, sizeof *v);
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_INPUT && n->op != IR_PARAM) continue;
    int64_t cnt = ir_numel(&n->shape);
    v[i] = calloc((size_t)cnt + 1, sizeof(double));
    if (n->op == IR_PARAM) {
      float *f = calloc((size_t)cnt + 1, sizeof(float));
      ir_param_init_values(&g->params[n->attr.i], 7, f);
      for (int64_t e = 0; e < cnt; e++) v[i][e] = f[e];
      free(f);
    } else {
      for (int64_t e = 0; e < cnt; e++)
        v[i][e] = ir_dtype_is_float(n->dtype) ? (double)(float)(0.25 + 0.125 * (double)((e * 5) % 7) - 0.5)
                                              : (double)(1 + (e * 7) % 3);
    }
  }
  return v;
}

static void values_free(const ir_graph *g, double **v) {
  ir_interp_release(g, v);
  for (int i = 0; i < g->nnodes; i++) free(v[i]);
  free(v);
}

/* Outputs and loss of two runs, bit for bit; the first differing tensor
 * in *which. */
static int same_results(const ir_graph *g, double **a, double **b, int *which) {
  for (int j = -1; j < g->noutputs; j++) {
    int i = j < 0 ? g->loss : g->outputs[j].node;
    if (i < 0) continue;
    *which = i;
    if (!a[i] || !b[i] || memcmp(a[i], b[i], sizeof(double) * (size_t)ir_numel(&g->nodes[i].shape))) return 0;
  }
  return 1;
}

/* The interpreter's results against the plan executor's on plan p. 1 when
 * bit-identical; -1 when a run failed. */
static int exec_matches(const pl_plan *p, const char *what) {
  const ir_graph *g = p->g;
  char msg[1024];
  double **ref = leaf_values(g), **got = leaf_values(g);
  int rc = ir_interp(g, IR_INTERP_F32, ref, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s: interpreter: %s", what, msg);
  int rc2 = pl_exec(p, got, msg, sizeof msg), which = -1;
  CHECK_MSG(rc2 == 0, "%s: plan executor: %s", what, msg);
  int same = rc || rc2 ? -1 : same_results(g, ref, got, &which);
  if (same == 0) {
    char a[160];
    fprintf(stderr, "%s: the plan executor's %s differs from the interpreter's\n", what,
            pl_tensor_name(g, which, a, sizeof a));
  }
  values_free(g, ref);
  values_free(g, got);
  return same;
}

/* Kernels and arena bytes the LLVM backend planned for each example at
 * batch 4 before the plan moved out of it (codegen/llvm/cg_jit.c at
 * 6de1f65): the plan must make the same kernels and the same layout.
 * Changed since, on purpose: the CNN's conv2d -> relu pairs are one kernel
 * each (plan_group.c, 10 -> 8 and 36 -> 34 kernels); the char-GPT's
 * attention at batch 4 is one work item whose heads run in parallel, with
 * tiles for each part in its scratch (rt/rt_seq.c; arena 1310720 and
 * 1048576 -> 1720320), since h-attn a whole head's K^T, V and scores per
 * part instead (1720320 -> 1430272). On a CPU with AVX2 or AVX-512 the CNN's inference conv2d
 * kernels run the direct kernel (rt/rt_dconv.c), whose scratch is the packed
 * weights (and, since the image tiles, each pixel's taps inside the image:
 * -O2 39680 -> 40960), not im2col buffers: arena_direct (0: the same as arena).
 * There the inference conv2d -> relu -> maxpool2d chains are one kernel
 * each too (the pool fused into the direct kernel, pl_target.conv_pool):
 * -O2 8 -> 6 kernels (kernels_direct), and the unpooled results leave the
 * arena (40960 -> 26624). The training steps' update is one kernel per
 * PL_MAXUPD operands instead of one per parameter (plan_group.c
 * batch_updates), arenas unchanged: -O2 mlp 22 -> 17, cnn 34 -> 27, gpt
 * 272 -> 222, lstm 34 -> 29 kernels. */
static const struct {
  const char *model;
  int train, level, kernels;
  int64_t arena, arena_direct;
  int kernels_direct;
} before[] = {
  {"mlp", 0, 0, 10, 8192, 0, 0},    {"mlp", 0, 2, 5, 8192, 0, 0},       {"mlp", 1, 0, 116, 827968, 0, 0},
  {"mlp", 1, 2, 17, 354752, 0, 0},  {"cnn", 0, 0, 13, 66560, 32768, 0}, {"cnn", 0, 2, 8, 74752, 26624, 6},
  {"cnn", 1, 0, 154, 153152, 0, 0}, {"cnn", 1, 2, 27, 141248, 0, 0},    {"gpt", 0, 0, 46, 1430272, 0, 0},
  {"gpt", 0, 2, 25, 1430272, 0, 0}, {"gpt", 1, 0, 1344, 8070336, 0, 0}, {"gpt", 1, 2, 222, 10839232, 0, 0},
  {"lstm", 0, 0, 5, 362496, 0, 0},  {"lstm", 0, 2, 4, 362496, 0, 0},    {"lstm", 1, 0, 133, 2144704, 0, 0},
  {"lstm", 1, 2, 29, 2144704, 0, 0},
};

static void test_same_kernels_as_before(void) {
  for (size_t c = 0; c < sizeof before / sizeof before[0]; c++) {
    char path[128];
    snprintf(path, sizeof path, "examples/%s.nn", before[c].model);
    lathe_program *t = compile(path, 4, before[c].train, before[c].level);
    if (!t) continue;
    pl_plan p;
    CHECK(pl_build(&t->g, cg_plan_target(), &p) == 0);
    int direct = lathe_rt_conv_isa() != LATHE_RT_CONV_SCALAR;
    int64_t arena = before[c].arena_direct && direct ? before[c].arena_direct : before[c].arena;
    int kernels = before[c].kernels_direct && direct ? before[c].kernels_direct : before[c].kernels;
    CHECK_MSG(p.nk == kernels && p.arena_bytes == arena,
              "%s train=%d -O%d: %d kernels, arena %lld; before: %d, %lld", path, before[c].train,
              before[c].level, p.nk, (long long)p.arena_bytes, kernels, (long long)arena);
    int64_t a = 0, naive = 0;
    CHECK(cg_plan_stats(&t->g, &a, &naive) == 0 && a == p.arena_bytes && naive == p.naive_bytes);
    pl_free(&p);
    lathe_program_free(t);
  }
}

/* The LLVM backend renders exactly the plan: one call per plan kernel. */
static void test_backend_renders_plan(void) {
  lathe_program *t = compile("examples/mlp.nn", 4, 1, 2);
  if (!t) return;
  pl_plan p;
  CHECK(pl_build(&t->g, cg_plan_target(), &p) == 0);
  char msg[512];
  cg_program *cp = cg_compile(&t->g, NULL, msg, sizeof msg);
  CHECK_MSG(cp != NULL, "%s", msg);
  if (cp) {
    cg_stats st;
    cg_get_stats(cp, &st);
    CHECK_MSG(st.kernels == p.nk && st.arena_bytes == p.arena_bytes, "backend: %d kernels, plan %d", st.kernels,
              p.nk);
    for (int j = 0; j < t->g.noutputs; j++)
      CHECK(cg_output_checked(cp, j) == p.buf[t->g.outputs[j].node].checked);
    cg_free(cp);
  }
  pl_free(&p);
  lathe_program_free(t);
}

static void test_examples_exec(void) {
  static const char *const models[] = {"mlp", "cnn", "gpt", "lstm"};
  for (int e = 0; e < 4; e++)
    for (int train = 0; train < 2; train++)
      for (int level = 0; level <= 2; level += 2) {
        char path[128], what[160], msg[1024];
        snprintf(path, sizeof path, "examples/%s.nn", models[e]);
        snprintf(what, sizeof what, "%s %s -O%d", path, train ? "training step" : "forward", level);
        lathe_program *t = compile(path, 2, train, level);
        if (!t) continue;
        pl_plan p;
        CHECK(pl_build(&t->g, cg_plan_target(), &p) == 0);
        CHECK_MSG(pl_verify(&p, msg, sizeof msg) == 0, "%s: %s", what, msg);
        CHECK_MSG(exec_matches(&p, what) == 1, "%s: the plan executor differs from the interpreter", what);
        pl_free(&p);
        lathe_program_free(t);
      }
}

/* ---- hand-made bad plans ---- */

static int reads(const pl_kernel *k, int x) {
  for (int j = 0; j < k->nin; j++)
    if (k->in[j] == x) return 1;
  return 0;
}

/* The last kernel reading x, -1 if none. */
static int last_reader(const pl_plan *p, int x) {
  int last = -1;
  for (int q = 0; q < p->nk; q++)
    if (reads(&p->k[q], x)) last = q;
  return last;
}

static void expect_rejected(const pl_plan *p, const char *want, const char *n1, const char *n2) {
  char msg[1024];
  CHECK(pl_verify(p, msg, sizeof msg) != 0);
  CHECK_MSG(strstr(msg, want) != NULL, "got '%s', want '%s'", msg, want);
  CHECK_MSG(strstr(msg, n1) && strstr(msg, n2), "'%s' names neither %s nor %s", msg, n1, n2);
}

/* An arena tensor read by kernel q and by a kernel after q, and kernel q's
 * single elementwise result. 0 when found. */
static int find_read_later(const pl_plan *p, int *q_out, int *s_out) {
  for (int q = 0; q < p->nk; q++) {
    const pl_kernel *k = &p->k[q];
    if (k->nmember != 1 || p->buf[k->node].kind != PL_BUF_ARENA) continue;
    for (int j = 0; j < k->nin; j++) {
      int s = k->in[j];
      if (p->buf[s].kind == PL_BUF_ARENA && p->buf[s].bytes == p->buf[k->node].bytes && last_reader(p, s) > q) {
        *q_out = q, *s_out = s;
        return 0;
      }
    }
  }
  return -1;
}

static void test_bad_plans(void) {
  lathe_program *t = compile("examples/cnn.nn", 4, 1, 2);
  if (!t) return;
  const ir_graph *g = &t->g;
  pl_plan p;
  char msg[1024], a[160], b[160];
  CHECK(pl_build(g, cg_plan_target(), &p) == 0);
  CHECK_MSG(pl_verify(&p, msg, sizeof msg) == 0, "%s", msg);
  int q = -1, s = -1;
  CHECK(find_read_later(&p, &q, &s) == 0);
  if (q < 0) {
    pl_free(&p);
    lathe_program_free(t);
    return;
  }
  int r = p.k[q].node;
  pl_tensor_name(g, r, a, sizeof a);
  pl_tensor_name(g, s, b, sizeof b);
  pl_buf keep = p.buf[r];

  /* in place over a value read later: r takes s's block, s is read after */
  p.buf[r].off = p.buf[s].off, p.buf[r].inplace_of = s;
  expect_rejected(&p, "in place over", a, b);
  CHECK_MSG(exec_matches(&p, "bad in-place plan (must differ)") == 0, "a bad in-place plan gave the interpreter's results");

  /* an overlap: the same block, no in-place claimed */
  p.buf[r].inplace_of = -1;
  expect_rejected(&p, "overlap while both are live", a, b);
  CHECK_MSG(exec_matches(&p, "overlapping plan (must differ)") == 0, "an overlapping plan gave the interpreter's results");
  p.buf[r] = keep;
  CHECK_MSG(pl_verify(&p, msg, sizeof msg) == 0, "%s", msg);

  /* use before definition: kernel q moved before the kernel writing s */
  int w = p.buf[s].kernel;
  pl_kernel kq = p.k[q];
  memmove(&p.k[w + 1], &p.k[w], sizeof(pl_kernel) * (size_t)(q - w));
  p.k[w] = kq;
  pl_tensor_name(g, s, b, sizeof b);
  expect_rejected(&p, "before kernel", b, "reads");
  pl_free(&p);
  lathe_program_free(t);
}

/* A sibling group's member that nothing reads (a hand-made graph, no dce)
 * is still written by the group's kernel: its block must live until then.
 * The verifier found the memory plan giving it to the group's next member,
 * which the same kernel writes (passes/memplan.c mp_last_uses). */
static void test_dead_sibling(void) {
  static const char src[] = "input x : f32[8, 16]\n"
                            "d = exp(x) * 2\n"
                            "e = x * 3 + 1\n"
                            "output z = softmax(e)\n";
  char *err = NULL, msg[1024];
  fe_model *m = fe_parse("t.nn", src, strlen(src), &err);
  CHECK_MSG(m != NULL, "%s", err ? err : "?");
  free(err);
  if (!m) return;
  arena A;
  ir_graph g;
  ar_init(&A);
  ir_graph_init(&g, &A, "dead");
  int64_t dims[8] = {2, 2, 2, 2, 2, 2, 2, 2};
  CHECK(fe_lower(m, dims, &g, &err) == 0);
  free(err);
  fe_free(m);
  CHECK(ps_fuse(&g, msg, sizeof msg) > 0);
  pl_plan p;
  CHECK(pl_build(&g, cg_plan_target(), &p) == 0);
  int sib = 0;
  for (int q = 0; q < p.nk; q++) sib += p.k[q].kind == PL_K_SIBLINGS;
  CHECK_MSG(sib > 0, "no sibling kernel in the plan");
  CHECK_MSG(pl_verify(&p, msg, sizeof msg) == 0, "%s", msg);
  CHECK(exec_matches(&p, "dead sibling") == 1);
  pl_free(&p);
  ar_free(&A);
}

/* The public call prints the plan, and refuses NULL arguments by value. */
/* Every parameter's update is one plan kernel (plan_group.c
 * batch_updates): the MLP's six sibling groups (new m, v, weight each) in
 * one siblings kernel at the last group's place, each group's operands
 * mapped (res, inop) to distinct results and shared inputs listed once; the
 * plan verifies and runs to the interpreter's values. */
static void test_updates_one_kernel(void) {
  lathe_program *t = compile("examples/mlp.nn", 4, 1, 2);
  if (!t) return;
  pl_plan p;
  char msg[1024];
  CHECK(pl_build(&t->g, cg_plan_target(), &p) == 0);
  int sib = -1, nsib = 0;
  for (int q = 0; q < p.nk; q++)
    if (p.k[q].kind == PL_K_SIBLINGS) sib = q, nsib++;
  CHECK_MSG(nsib == 1, "%d sibling kernels in the MLP's step, want 1", nsib);
  if (sib >= 0) {
    const pl_kernel *k = &p.k[sib];
    CHECK_MSG(k->nsib == 6 && k->nmember == 18 && k->nout == 18, "update kernel: %d groups, %d members, %d stored",
              k->nsib, k->nmember, k->nout);
    int seen[PL_MAXUPD] = {0}, shared = 0;
    for (int g = 0; g < k->nsib; g++) {
      for (int m = 0; m < k->sib[g].n; m++) {
        int j = k->sib[g].res[m];
        CHECK(j >= 0 && j <= k->narg && !seen[j] && (j ? k->arg[j - 1] : k->node) == k->sib[g].node[m]);
        if (j >= 0 && j < PL_MAXUPD) seen[j] = 1;
      }
      for (int q = 0; q < k->sib[g].nin; q++) {
        int j = k->sib[g].inop[q];
        CHECK(j >= 1 && j <= k->narg && k->arg[j - 1] == k->sib[g].in[q]);
        shared += g > 0 && j < k->sib[g].inop[0];
      }
    }
    CHECK_MSG(shared > 0, "no input shared between the groups' operands");
  }
  CHECK_MSG(pl_verify(&p, msg, sizeof msg) == 0, "%s", msg);
  CHECK(exec_matches(&p, "mlp update kernel") == 1);
  pl_free(&p);
  lathe_program_free(t);
}

static void test_api(void) {
  lathe_program *t = compile("examples/mlp.nn", 4, 0, 2);
  if (!t) return;
  lathe_error err = {0};
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK(lathe_program_print_kernels(t, f, &err) == 0);
  fclose(f);
  CHECK_MSG(text && strstr(text, "kernel plan: 5 kernels") && strstr(text, "gemm+epilogue"), "%s", text);
  free(text);
  CHECK(lathe_program_print_kernels(NULL, stdout, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "lathe_program_print_kernels: the program is NULL");
  lathe_error_clear(&err);
  CHECK(lathe_program_print_kernels(t, NULL, &err) == LATHE_EUSER);
  CHECK_STR(err.message, "lathe_program_print_kernels: the file is NULL");
  lathe_error_clear(&err);
  lathe_program_free(t);
}

int main(void) {
  test_api();
  test_dead_sibling();
  test_updates_one_kernel();
  test_same_kernels_as_before();
  test_backend_renders_plan();
  test_bad_plans();
  test_examples_exec();
  return TEST_REPORT();
}
