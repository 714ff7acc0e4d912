/* cg_cache.c -- the on-disk object cache of the CPU backend. The module is
 * compiled in parts (cg_split.c); each part's object file is stored under a
 * key hashed from the whole unoptimised module's bitcode (which names the
 * target CPU and features in every function), the target triple, CPU,
 * features, optimisation level, LLVM version and which part of how many, so
 * a second compile of the same model skips optimisation and code generation
 * for every part.
 *
 * Directory: $LATHE_CACHE_DIR, else $XDG_CACHE_HOME/lathe, else
 * ~/.cache/lathe. File: magic, key, payload length, payload checksum,
 * payload. A file whose header or checksum does not match is ignored (and
 * overwritten by the next store), never trusted. Every failure here only
 * means "no cache": compiling never fails because of the cache. */
#include "cg_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/runtime.h"

static const char cg_magic[8] = {'L', 'A', 'T', 'H', 'E', 'O', 'B', '1'};

typedef struct {
  char magic[8];
  char key[CG_KEYLEN];
  uint64_t len, sum;
} cg_cache_hdr;

static uint64_t fnv64(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h;
}

void cg_cache_key(const char *const *parts, int nparts, char key[CG_KEYLEN]) {
  /* two independent 64-bit FNV-1a streams: 128 bits of key */
  uint64_t a = 14695981039346656037ull, b = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < nparts; i++) {
    size_t n = strlen(parts[i]) + 1; /* the NUL separates the parts */
    a = fnv64(a, parts[i], n);
    b = fnv64(b ^ (uint64_t)i, parts[i], n);
  }
  snprintf(key, CG_KEYLEN, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

/* The cache directory (created), or 0 when there is none. */
static int cache_dir(char *dir, size_t n) {
  const char *d = getenv("LATHE_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  int w;
  if (d && *d) w = snprintf(dir, n, "%s", d);
  else if (x && *x) w = snprintf(dir, n, "%s/lathe", x);
  else if (h && *h) w = snprintf(dir, n, "%s/.cache/lathe", h);
  else return 0;
  if (w <= 0 || (size_t)w >= n) return 0;
  /* mkdir -p */
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0777) && errno != EEXIST) return 0;
    *p = '/';
  }
  return !mkdir(dir, 0777) || errno == EEXIST;
}

static int cache_path(const char *key, char *path, size_t n) {
  char dir[3072];
  if (!cache_dir(dir, sizeof dir)) return 0;
  int w = snprintf(path, n, "%s/%.*s.o", dir, CG_KEYLEN - 1, key);
  return w > 0 && (size_t)w < n;
}

void *cg_cache_load(const char *key, size_t *len) {
  char path[4096], msg[256];
  char *data = NULL;
  size_t n = 0;
  if (!cache_path(key, path, sizeof path) || rt_read_file(path, &data, &n, msg, sizeof msg)) return NULL;
  cg_cache_hdr h;
  int ok = n >= sizeof h;
  if (ok) {
    memcpy(&h, data, sizeof h);
    ok = !memcmp(h.magic, cg_magic, sizeof cg_magic) && !memcmp(h.key, key, CG_KEYLEN) &&
         h.len == n - sizeof h && h.len > 0 && h.sum == fnv64(14695981039346656037ull, data + sizeof h, h.len);
  }
  if (!ok) {
    free(data);
    return NULL;
  }
  memmove(data, data + sizeof h, h.len);
  *len = h.len;
  return data;
}

void cg_cache_store(const char *key, const void *obj, size_t len) {
  char path[4096], msg[256];
  if (!len || !cache_path(key, path, sizeof path)) return;
  cg_cache_hdr h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, cg_magic, sizeof cg_magic);
  memcpy(h.key, key, CG_KEYLEN);
  h.len = len;
  h.sum = fnv64(14695981039346656037ull, obj, len);
  rt_chunk c[2] = {{&h, sizeof h}, {obj, len}};
  (void)rt_write_atomic(path, c, 2, msg, sizeof msg); /* best effort */
}
