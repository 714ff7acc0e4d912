/* test_cuda_exec.c: the CUDA backend's rendered kernels on the CPU executor
 * (tests/cuexec/). Every example model's forward pass and training step is
 * planned, rendered and compiled for sm_80 (codegen/cuda: cu_compile, NVRTC
 * where the toolkit is), and every module's CUDA C is loaded on the executor
 * (compiled for the host with cx_shim.h) with each of its kernels found.
 *
 * Kind coverage: each plan kernel kind (plan/plan.h) must appear in some
 * loaded case; a kind that appears only in a refusal of the renderer is
 * listed as not rendered yet, and a kind in neither fails the test. Two
 * inline models plan the kinds the examples reach only past a refusal.
 *
 * Not yet here: running the launches (outputs, gradients, training steps
 * against the interpreter) needs the CUDA runtime that drives a program
 * through a cu_driver (cu_set_driver_factory), which is not on main yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "cx.h"
#include "lathe.h"
#include "runtime/program.h"
#include "test.h"

/* The char-GPT's residual stream without attention: embeddings, residual
 * adds feeding layernorms and their gradients, while attention is not
 * rendered (the kinds add+layernorm, layernorm_grad+add, move). */
static const char resid_src[] =
    "model resid\n"
    "const VOCAB = 20, T = 8, D = 32\n"
    "input  tokens : i32[batch, T]\n"
    "target next   : i32[batch, T]\n"
    "def block(x) {\n"
    "  a = dense(x, D, name=\"mix\") |> layernorm(name=\"ln1\")\n"
    "  x = x + a\n"
    "  m = layernorm(x, name=\"ln2\") |> dense(4 * D, name=\"fc\") |> gelu\n"
    "  x = x + dense(m, D, name=\"proj\")\n"
    "  return x\n"
    "}\n"
    "pos = param([T, D], init=\"normal\", name=\"pos\")\n"
    "h = embedding(tokens, VOCAB, D, name=\"tok\") + pos\n"
    "h = repeat(2, block, h, name=\"h\")\n"
    "h = layernorm(h, name=\"ln_f\")\n"
    "logits = dense(h, VOCAB, name=\"head\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, next)\n"
    "train {\n"
    "  optimizer = adamw(lr=1e-3, weight_decay=0.1)\n"
    "  clip_norm = 1.0\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

/* A pooling layer behind a parameter, so that its gradient (kind other)
 * is planned without a convolution. */
static const char pool_src[] =
    "model pool\n"
    "input  x : f32[batch, 4, 8, 8]\n"
    "target y : i32[batch]\n"
    "s = param([4, 8, 8], init=\"normal\", name=\"s\")\n"
    "h = maxpool2d(x * s, 2) |> relu\n"
    "logits = dense(flatten(h), 10, name=\"out\")\n"
    "output logits\n"
    "loss = cross_entropy(logits, y)\n"
    "train {\n"
    "  optimizer = adam(lr=1e-3)\n"
    "  epochs = 1\n"
    "  batch = 4\n"
    "}\n";

static const struct {
  const char *path;
  const char *src; /* the model's text, when not a file */
  int64_t batch;
} ex[] = {
  {"examples/mlp.nn", NULL, 4}, {"examples/cnn.nn", NULL, 4}, {"examples/cnn_bn.nn", NULL, 4},
  {"examples/gpt.nn", NULL, 2}, {"examples/lstm.nn", NULL, 2}, {"examples/reverse.nn", NULL, 2},
  {"resid (inline)", resid_src, 2}, {"pool (inline)", pool_src, 2},
};
enum { NEX = sizeof ex / sizeof ex[0] };

static cu_driver *D;
static int loaded_kind[PL_NKINDS], refused_kind[PL_NKINDS];

static lathe_program *build(int e, int train) {
  lathe_error err = {0};
  lathe_program *p = NULL;
  lathe_model *m = ex[e].src ? lathe_model_parse(ex[e].path, ex[e].src, strlen(ex[e].src), &err)
                             : lathe_model_load(ex[e].path, &err);
  if (m && lathe_model_bind(m, "batch", ex[e].batch, &err) == 0) {
    lathe_options o = {.backend = LATHE_BACKEND_INTERP};
    p = train ? lathe_compile_train(m, &o, &err) : lathe_compile(m, &o, &err);
  }
  CHECK_MSG(p != NULL, "%s: %s", ex[e].path, err.message ? err.message : "");
  lathe_error_clear(&err);
  lathe_model_free(m);
  return p;
}

/* The refused kind, from "kernel kN (KIND) at node ..." */
static void note_refusal(const char *msg) {
  const char *open = strstr(msg, " (");
  for (int k = 0; open && k < PL_NKINDS; k++) {
    const char *name = pl_kind_name((pl_kind)k);
    size_t n = strlen(name);
    if (!strncmp(open + 2, name, n) && open[2 + n] == ')') refused_kind[k] = 1;
  }
}

static void load_case(int e, int train) {
  lathe_program *p = build(e, train);
  if (!p) return;
  static char msg[8192];
  cu_compiled c;
  const char *what = train ? "training step" : "forward";
  if (cu_compile(&p->g, "sm_80", &c, msg, sizeof msg)) {
    printf("NOT RENDERED YET %-20s %-13s %s\n", ex[e].path, what, msg);
    note_refusal(msg);
    lathe_program_free(p);
    return;
  }
  int found = 0, nfail = 0;
  for (int m = 0; m < c.mods.nmod; m++) {
    void *mod = NULL;
    int rc = D->module_load(D, c.mods.src[m], c.mods.img[m].image, c.mods.img[m].len, &mod);
    CHECK_MSG(rc == 0, "%s %s module %d: %s", ex[e].path, what, m, D->err);
    if (rc) {
      nfail++;
      continue;
    }
    for (int f = 0; f < c.prog.nfn; f++) {
      if (c.mods.mod_of[f] != m) continue;
      void *fn = NULL;
      rc = D->get_function(D, mod, c.prog.fn[f].name, &fn);
      CHECK_MSG(rc == 0, "%s %s: %s", ex[e].path, what, D->err);
      if (rc == 0) found++, loaded_kind[c.plan.k[c.prog.fn[f].pk].kind] = 1;
    }
  }
  for (int l = 0; l < c.prog.nl; l++)
    if (c.prog.l[l].what == CU_L_GEMM) loaded_kind[c.plan.k[c.prog.l[l].pk].kind] = 1;
  CHECK(found == c.prog.nfn);
  printf("loaded           %-20s %-13s %d modules, %d of %d kernels%s\n", ex[e].path, what, c.mods.nmod, found,
         c.prog.nfn, nfail ? " (some modules failed)" : "");
  cu_compiled_free(&c);
  lathe_program_free(p);
}

int main(void) {
  if (!cx_host_compiler()) {
    printf("SKIP test_cuda_exec: no host C++ compiler was found at configure time; the executor needs one\n");
    return 0;
  }
  char err[256], why[1024];
  if (!cu_dl_nvrtc(why, sizeof why)) {
    printf("SKIP test_cuda_exec: the kernels are compiled by NVRTC first, and it is absent: %s\n", why);
    return 0;
  }
  D = cx_driver(err, sizeof err);
  if (!D) {
    fprintf(stderr, "cx_driver: %s\n", err);
    return 1;
  }
  for (int e = 0; e < NEX; e++) load_case(e, 0), load_case(e, 1);
  for (int k = 0; k < PL_NKINDS; k++) {
    const char *name = pl_kind_name((pl_kind)k);
    if (loaded_kind[k]) printf("kind %-14s covered\n", name);
    else if (refused_kind[k]) printf("kind %-14s NOT RENDERED YET (the renderer refuses it in the examples)\n", name);
    else CHECK_MSG(0, "kind %s: no case among the examples (add a model that plans it)", name);
  }
  D->destroy(D);
  return TEST_REPORT();
}
