/* cu_nvrtc.c -- CUDA C to a device image with NVRTC, through a disk cache.
 * CUBIN when this NVRTC can make it (the driver loads it as is); PTX only as
 * the fallback, since a PTX newer than the driver is refused at load time.
 * The cache sits in the CPU backend's cache directory ($LATHE_CACHE_DIR,
 * else $XDG_CACHE_HOME/lathe, else ~/.cache/lathe), one file per image keyed
 * by a hash of the source, the options, the arch and NVRTC's version. Every
 * cache failure only means "compile": it is never an error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "codegen/cuda/cu.h"
#include "runtime/runtime.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int cu_arch_ok(const char *arch, char *msg, size_t n) {
  int v = 0;
  char tail = 0;
  if (!arch || sscanf(arch, "sm_%d%c", &v, &tail) != 1 || v < 50 || v > 200)
    return ir_fail(msg, n, "--gpu-arch %s: expected sm_NN (sm_80, sm_90, ...)", arch ? arch : "(none)");
  return 0;
}

/* ---- the cache ---- */

static const char cu_magic[8] = {'L', 'A', 'T', 'H', 'E', 'C', 'U', '1'};
enum { CU_KEYLEN = 33 };

typedef struct {
  char magic[8];
  char key[CU_KEYLEN];
  char is_ptx;
  uint64_t len, sum;
} cu_cache_hdr;

static uint64_t fnv64(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

static void cache_key(const char *const *parts, int nparts, char key[CU_KEYLEN]) {
  uint64_t a = 14695981039346656037ull, b = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < nparts; i++) {
    size_t len = strlen(parts[i]) + 1;
    a = fnv64(a, parts[i], len);
    b = fnv64(b ^ (uint64_t)i, parts[i], len);
  }
  snprintf(key, CU_KEYLEN, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

static int cache_path(const char *key, char *path, size_t n) {
  const char *d = getenv("LATHE_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  char dir[3072];
  int w;
  if (d && *d) w = snprintf(dir, sizeof dir, "%s", d);
  else if (x && *x) w = snprintf(dir, sizeof dir, "%s/lathe", x);
  else if (h && *h) w = snprintf(dir, sizeof dir, "%s/.cache/lathe", h);
  else return 0;
  if (w <= 0 || (size_t)w >= sizeof dir) return 0;
  for (char *p = dir + 1; *p; p++) { /* mkdir -p */
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0777) && errno != EEXIST) return 0;
    *p = '/';
  }
  if (mkdir(dir, 0777) && errno != EEXIST) return 0;
  w = snprintf(path, n, "%s/%s.cuimg", dir, key);
  return w > 0 && (size_t)w < n;
}

static int cache_load(const char *key, cu_image *im) {
  char path[4096], msg[256], *data = NULL;
  size_t len = 0;
  if (!cache_path(key, path, sizeof path) || rt_read_file(path, &data, &len, msg, sizeof msg)) return 0;
  cu_cache_hdr h;
  int ok = len > sizeof h;
  if (ok) {
    memcpy(&h, data, sizeof h);
    ok = !memcmp(h.magic, cu_magic, sizeof cu_magic) && !memcmp(h.key, key, CU_KEYLEN) && h.len == len - sizeof h &&
         h.sum == fnv64(14695981039346656037ull, data + sizeof h, h.len);
  }
  if (!ok) {
    free(data);
    return 0;
  }
  memmove(data, data + sizeof h, h.len);
  im->image = data, im->len = h.len, im->is_ptx = h.is_ptx, im->cache_hit = 1;
  return 1;
}

static void cache_store(const char *key, const cu_image *im) {
  char path[4096], msg[256];
  if (!im->len || !cache_path(key, path, sizeof path)) return;
  cu_cache_hdr h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, cu_magic, sizeof cu_magic);
  memcpy(h.key, key, CU_KEYLEN);
  h.is_ptx = (char)im->is_ptx;
  h.len = im->len;
  h.sum = fnv64(14695981039346656037ull, im->image, im->len);
  rt_chunk c[2] = {{&h, sizeof h}, {im->image, im->len}};
  (void)rt_write_atomic(path, c, 2, msg, sizeof msg); /* best effort */
}

/* ---- NVRTC ---- */

/* NVRTC's log, trimmed (malloc'd), or NULL when empty. */
static char *program_log(const cu_nvrtc_api *nv, void *prog) {
  size_t n = 0;
  if (nv->GetProgramLogSize(prog, &n) || n <= 1) return NULL;
  char *log = malloc(n + 1);
  if (!log) return NULL;
  if (nv->GetProgramLog(prog, log)) {
    free(log);
    return NULL;
  }
  log[n] = 0;
  size_t k = strlen(log);
  while (k && (log[k - 1] == '\n' || log[k - 1] == ' ')) log[--k] = 0;
  if (!k) {
    free(log);
    return NULL;
  }
  return log;
}

/* The image of a compiled program: CUBIN when asked and available, else PTX. */
static int take_image(const cu_nvrtc_api *nv, void *prog, int cubin, cu_image *out, char *msg, size_t n) {
  size_t len = 0;
  int rc = cubin ? nv->GetCUBINSize(prog, &len) : nv->GetPTXSize(prog, &len);
  if (rc || !len) return ir_fail(msg, n, "NVRTC made no %s", cubin ? "CUBIN" : "PTX");
  char *buf = malloc(len + 1);
  if (!buf) return ir_fail(msg, n, "out of memory for a %zu-byte device image", len);
  rc = cubin ? nv->GetCUBIN(prog, buf) : nv->GetPTX(prog, buf);
  if (rc) {
    free(buf);
    return ir_fail(msg, n, "NVRTC: %s", nv->GetErrorString(rc));
  }
  buf[len] = 0;
  out->image = buf, out->len = len, out->is_ptx = !cubin;
  return 0;
}

int cu_nvrtc_compile(const char *src, const char *name, const char *arch, cu_image *out, char *msg, size_t n) {
  memset(out, 0, sizeof *out);
  double t0 = now_ms();
  if (cu_arch_ok(arch, msg, n)) return -1;
  const cu_nvrtc_api *nv = cu_dl_nvrtc(msg, n);
  if (!nv) return -1;
  /* CUBIN for sm_NN straight from NVRTC (11.1 and later); PTX for
   * compute_NN otherwise. IEEE division and square root: the kernels are
   * checked against the reference interpreter. */
  int cubin = nv->GetCUBINSize && nv->GetCUBIN;
  char archopt[64], ver[32];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=%s%s", cubin ? "sm_" : "compute_", arch + 3);
  snprintf(ver, sizeof ver, "nvrtc %d.%d", nv->major, nv->minor);
  const char *opts[] = {archopt, "--std=c++17", "--device-as-default-execution-space", "-lineinfo"};
  int nopts = (int)(sizeof opts / sizeof opts[0]);
  const char *parts[] = {src, opts[0], opts[1], opts[2], opts[3], arch, ver};
  char key[CU_KEYLEN];
  cache_key(parts, (int)(sizeof parts / sizeof parts[0]), key);
  if (cache_load(key, out)) {
    out->ms = now_ms() - t0;
    return 0;
  }
  void *prog = NULL;
  int rc = nv->CreateProgram(&prog, src, name, 0, NULL, NULL);
  if (rc) return ir_fail(msg, n, "NVRTC could not create %s: %s", name, nv->GetErrorString(rc));
  rc = nv->CompileProgram(prog, nopts, opts);
  char *log = program_log(nv, prog);
  if (rc) {
    int w = snprintf(msg, n, "NVRTC rejected %s for %s: %s", name, arch, nv->GetErrorString(rc));
    if (log && w > 0 && (size_t)w < n) snprintf(msg + w, n - (size_t)w, ": %s", log);
    free(log);
    nv->DestroyProgram(&prog);
    return -1;
  }
  rc = take_image(nv, prog, cubin, out, msg, n);
  nv->DestroyProgram(&prog);
  if (rc) {
    free(log);
    return -1;
  }
  out->log = log;
  if (!log) cache_store(key, out); /* a module with warnings compiles again: its warnings are shown again */
  out->ms = now_ms() - t0;
  return 0;
}

void cu_image_free(cu_image *im) {
  if (!im) return;
  free(im->image);
  free(im->log);
  memset(im, 0, sizeof *im);
}
