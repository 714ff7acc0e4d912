/* api_cuda.c -- the CUDA backend through the public API: which backends
 * this machine has, and rendering + compiling a program's kernels without
 * a device (lathe check --backend cuda --gpu-arch sm_90). */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cu.h"
#include "runtime/program.h"

int lathe_backend_available(lathe_backend b, char *why, size_t n) {
  char buf[2048];
  if (why && n) why[0] = 0;
  if (b == LATHE_BACKEND_INTERP || b == LATHE_BACKEND_LLVM) return 1;
  if (b != LATHE_BACKEND_CUDA) {
    if (why && n) snprintf(why, n, "backend %d is not a lathe_backend", (int)b);
    return 0;
  }
  cu_backend_status(buf, sizeof buf);
  int yes = !strncmp(buf, "cuda: yes", 9);
  if (why && n) {
    const char *open = strchr(buf, '(');
    snprintf(why, n, "%s", open ? open + 1 : buf);
    size_t k = strlen(why);
    if (k && why[k - 1] == ')') why[k - 1] = 0; /* the outer parentheses only */
  }
  return yes;
}

int lathe_program_cuda_check(const lathe_program *p, const char *gpu_arch, const char *dump_dir, FILE *log,
                             lathe_cuda_report *rep, lathe_error *err) {
  if (rep) memset(rep, 0, sizeof *rep);
  if (!p) return api_null(err, "lathe_program_cuda_check", "the program");
  char msg[8192];
  cu_compiled c;
  if (cu_compile_prec(&p->g, gpu_arch, p->opt.precision == LATHE_PRECISION_BF16, &c, msg, sizeof msg))
    return api_fail(err, LATHE_EUSER, "%s", msg);
  int warned = 0;
  for (int m = 0; m < c.mods.nmod; m++)
    if (c.mods.img[m].log) {
      fprintf(log ? log : stderr, "NVRTC warning in module%02d.cu (%s):\n%s\n", m, c.arch, c.mods.img[m].log);
      warned++;
    }
  if (dump_dir && cu_modules_dump(&c.mods, dump_dir, msg, sizeof msg)) {
    cu_compiled_free(&c);
    return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  if (rep) {
    snprintf(rep->arch, sizeof rep->arch, "%s", c.arch);
    rep->kernels = c.plan.nk, rep->functions = c.prog.nfn, rep->launches = c.prog.nl;
    for (int l = 0; l < c.prog.nl; l++) rep->gemms += c.prog.l[l].what == CU_L_GEMM;
    rep->modules = c.mods.nmod, rep->cache_hits = c.mods.cache_hits, rep->warnings = warned;
    rep->ptx = c.mods.nmod > 0 && c.mods.img[0].is_ptx;
    rep->render_ms = c.render_ms, rep->compile_ms = c.mods.wall_ms;
  }
  cu_compiled_free(&c);
  return 0;
}
