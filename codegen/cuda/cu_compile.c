/* cu_compile.c -- a graph to loadable CUDA modules: the kernel plan for the
 * CUDA target (checked by the plan verifier), rendered (cu_render.c) and
 * compiled (cu_modules.c) for the device's architecture or the one asked
 * for (compiling needs NVRTC only, no device). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cuda/cu.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int cu_device_arch(char *arch, size_t an, char *msg, size_t n) {
  char why[1024];
  const cu_cuda_api *cu = cu_dl_cuda(why, sizeof why);
  if (!cu) return ir_fail(msg, n, "no GPU to take the architecture from (%s): give --gpu-arch sm_80|sm_90", why);
  int dev = 0, count = 0, major = 0, minor = 0;
  /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 */
  if (cu->Init(0) || cu->DeviceGetCount(&count) || count < 1 || cu->DeviceGet(&dev, 0) ||
      cu->DeviceGetAttribute(&major, 75, dev) || cu->DeviceGetAttribute(&minor, 76, dev))
    return ir_fail(msg, n, "%s found no usable GPU: give --gpu-arch sm_80|sm_90 to compile without one", cu->path);
  snprintf(arch, an, "sm_%d%d", major, minor);
  return 0;
}

int cu_compile(const ir_graph *g, const char *arch, cu_compiled *out, char *msg, size_t n) {
  return cu_compile_prec(g, arch, 0, out, msg, n);
}

/* --precision bf16: the plan again with the bf16 tensors in half-sized
 * arena blocks (pl_target.half), rendered with the first plan's choice of
 * bf16 tensors. The kernels and buffer kinds do not depend on sizes; should
 * the second plan not allow that choice (checked), the f32-width plan (bf16
 * in the first half of its blocks) is kept. vmsg[0] stays 0 when the
 * failure is memory. */
static int half_plan(const ir_graph *g, cu_compiled *out, char *vmsg, size_t vn) {
  pl_target t = *cu_plan_target_bf16();
  t.half = out->bf16;
  pl_plan hp;
  unsigned char *again = NULL;
  vmsg[0] = 0;
  if (pl_build(g, &t, &hp)) return -1;
  char why[1024];
  if (pl_verify(&hp, why, sizeof why)) {
    snprintf(vmsg, vn, "internal error: the bf16 kernel plan does not verify: %.900s", why);
    pl_free(&hp);
    return -1;
  }
  if (cu_bf16_buffers(&hp, &again)) { pl_free(&hp); return -1; }
  /* the second plan's in-place pairs join tensors of one width, so no
   * tensor bf16 in the first map can be f32 in the second's; a tensor can
   * go the other way (an in-place pair of the first plan that kept it f32
   * is gone) and then keeps its f32-sized block and the first map's f32 */
  int fits = 1;
  for (int i = 0; i < g->nnodes; i++) fits &= !out->bf16[i] || again[i];
  free(again);
  if (!fits) { pl_free(&hp); return 0; }
  pl_free(&out->plan);
  out->plan = hp;
  return 0;
}

int cu_compile_prec(const ir_graph *g, const char *arch, int bf16, cu_compiled *out, char *msg, size_t n) {
  memset(out, 0, sizeof *out);
  if (arch && *arch) {
    if (cu_arch_ok(arch, msg, n)) return -1;
    snprintf(out->arch, sizeof out->arch, "%s", arch);
  } else if (cu_device_arch(out->arch, sizeof out->arch, msg, n)) {
    return -1;
  }
  double t0 = now_ms();
  if (pl_build(g, bf16 ? cu_plan_target_bf16() : cu_plan_target(), &out->plan))
    return ir_fail(msg, n, "out of memory for the kernel plan");
  char vmsg[1024];
  if (pl_verify(&out->plan, vmsg, sizeof vmsg)) {
    pl_free(&out->plan);
    return ir_fail(msg, n, "internal error: the kernel plan does not verify: %s", vmsg);
  }
  if (bf16 && (cu_bf16_buffers(&out->plan, &out->bf16) || half_plan(g, out, vmsg, sizeof vmsg))) {
    cu_compiled_free(out);
    return ir_fail(msg, n, "%s", vmsg[0] ? vmsg : "out of memory for the kernel plan");
  }
  if (cu_render_prec(&out->plan, out->bf16, &out->prog, msg, n)) {
    free(out->bf16);
    pl_free(&out->plan);
    return -1;
  }
  out->render_ms = now_ms() - t0;
  if (cu_modules_build(&out->prog, out->arch, 0, &out->mods, msg, n)) {
    free(out->bf16);
    cu_program_free(&out->prog);
    pl_free(&out->plan);
    return -1;
  }
  return 0;
}

void cu_compiled_free(cu_compiled *c) {
  if (!c) return;
  cu_modules_free(&c->mods);
  cu_program_free(&c->prog);
  pl_free(&c->plan);
  free(c->bf16);
  memset(c, 0, sizeof *c);
}
