/* cg_host.c -- start-up checks of the host for the CPU backend: the CPU
 * features the generated code and OpenBLAS's kernel will execute must be
 * present, and OpenBLAS must compute a small product correctly. A failure is
 * a clear error from cg_compile, not a SIGILL in the middle of a run. */
#include "cg_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
/* __builtin_cpu_supports wants a literal: one function per feature. */
static int has_avx(void) { return __builtin_cpu_supports("avx"); }
static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }
static int has_fma(void) { return __builtin_cpu_supports("fma"); }
static int has_avx512f(void) { return __builtin_cpu_supports("avx512f"); }
static int has_avx512bw(void) { return __builtin_cpu_supports("avx512bw"); }
static int has_avx512vl(void) { return __builtin_cpu_supports("avx512vl"); }

typedef struct {
  const char *name; /* as LLVM spells it in the feature string, without '+' */
  int (*present)(void);
} cg_feature;

static const cg_feature features[] = {
  {"avx", has_avx},         {"avx2", has_avx2},         {"fma", has_fma},
  {"avx512f", has_avx512f}, {"avx512bw", has_avx512bw}, {"avx512vl", has_avx512vl},
};
enum { NFEAT = sizeof features / sizeof features[0] };

/* OpenBLAS kernels (openblas_get_corename, lower case) and what they execute. */
static const struct {
  const char *core;
  const char *needs[4];
} blas_cores[] = {
  {"sandybridge", {"avx"}},
  {"haswell", {"avx2", "fma"}},
  {"zen", {"avx2", "fma"}},
  {"skylakex", {"avx512f", "avx512bw", "avx512vl"}},
  {"cooperlake", {"avx512f", "avx512bw", "avx512vl"}},
  {"sapphirerapids", {"avx512f", "avx512bw", "avx512vl"}},
};

static const cg_feature *feature(const char *name) {
  for (int i = 0; i < NFEAT; i++)
    if (!strcmp(features[i].name, name)) return &features[i];
  return NULL;
}

/* Whether the comma-separated feature list has "+name" as an item. */
static int listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
    if (p[0] == '+' && !strncmp(p + 1, name, n) && (p[1 + n] == ',' || p[1 + n] == '\0')) return 1;
  return 0;
}

/* Present on this host and not in the list of features to pretend absent
 * (for tests; "+a,+b" form, may be NULL). */
static int usable(const cg_feature *f, const char *hide) { return f->present() && !(hide && listed(hide, f->name)); }

/* Every feature LLVM will generate code for ("+avx2,...") must be there. */
static int check_llvm_features(const char *feat, const char *hide, char *msg, size_t msgn) {
  for (int i = 0; i < NFEAT; i++)
    if (listed(feat, features[i].name) && !usable(&features[i], hide)) {
      snprintf(msg, msgn,
               "llvm backend: LLVM reports CPU feature '%s' but this CPU (or the OS) does not enable it; "
               "the generated code would not run here",
               features[i].name);
      return -1;
    }
  return 0;
}

static int check_blas_core(const char *name, const char *hide, char *msg, size_t msgn) {
  char core[64] = "";
  for (size_t i = 0; name && name[i] && i + 1 < sizeof core; i++)
    core[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]), core[i + 1] = '\0';
  for (size_t c = 0; c < sizeof blas_cores / sizeof blas_cores[0]; c++) {
    if (strcmp(blas_cores[c].core, core)) continue;
    for (int j = 0; j < 4 && blas_cores[c].needs[j]; j++) {
      const cg_feature *f = feature(blas_cores[c].needs[j]);
      if (f && !usable(f, hide)) {
        const char *env = getenv("OPENBLAS_CORETYPE");
        snprintf(msg, msgn,
                 "llvm backend: OpenBLAS is set to its '%s' kernel%s%s%s, which needs the CPU feature '%s' that "
                 "this CPU lacks; unset OPENBLAS_CORETYPE or set it to a kernel this CPU supports",
                 name, env ? " (OPENBLAS_CORETYPE=" : "", env ? env : "", env ? ")" : "", f->name);
        return -1;
      }
    }
  }
  return 0;
}
#else
static int check_llvm_features(const char *feat, const char *hide, char *msg, size_t msgn) {
  (void)feat, (void)hide, (void)msg, (void)msgn;
  return 0;
}
static int check_blas_core(const char *name, const char *hide, char *msg, size_t msgn) {
  (void)name, (void)hide, (void)msg, (void)msgn;
  return 0;
}
#endif

/* A 2x3 by 3x2 product with a known exact result. */
static int check_blas_result(char *msg, size_t msgn) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12}, c[4] = {0};
  static const float want[4] = {58, 64, 139, 154};
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
  for (int i = 0; i < 4; i++)
    if (c[i] != want[i]) {
      snprintf(msg, msgn, "llvm backend: OpenBLAS is unusable: a 2x3 by 3x2 cblas_sgemm gave %g where %g is right",
               (double)c[i], (double)want[i]);
      return -1;
    }
  return 0;
}

int cg_host_check_with(const char *llvm_features, const char *blas_core, const char *hide, char *msg, size_t msgn) {
  if (check_llvm_features(llvm_features, hide, msg, msgn)) return -1;
  return check_blas_core(blas_core, hide, msg, msgn);
}

static int host_rc;
static char host_msg[512];
static const char *host_features;

static void host_check_once(void) {
  host_rc = cg_host_check_with(host_features, openblas_get_corename(), NULL, host_msg, sizeof host_msg);
  if (!host_rc) host_rc = check_blas_result(host_msg, sizeof host_msg);
}

int cg_host_check(const char *llvm_features, char *msg, size_t msgn) {
  static pthread_once_t once = PTHREAD_ONCE_INIT; /* the answer never changes within a process */
  host_features = llvm_features;
  pthread_once(&once, host_check_once);
  if (host_rc && msg && msgn) snprintf(msg, msgn, "%s", host_msg);
  return host_rc;
}
