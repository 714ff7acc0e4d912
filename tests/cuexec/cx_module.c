/* cx_module.c: a module's CUDA C compiled for the host. The source gets two
 * rewrites (extern __shared__ arrays become the launch's dynamic shared
 * block; a wrapper pair per __global__ kernel is appended, cx_abi.h), is
 * compiled by g++ with cx_shim.h included first into a .so, cached on disk by
 * a hash of everything that went into it, and dlopened. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cx.h"

#ifndef CX_SHIM_DIR
#error "CX_SHIM_DIR: the directory of cx_shim.h, set by tests/CMakeLists.txt"
#endif
#ifndef CX_CXX
#define CX_CXX "g++"
#endif

extern char **environ;

/* A growing string. */
typedef struct cx_buf {
  char *s;
  size_t n, cap;
  int oom;
} cx_buf;

static void cx_put(cx_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *t = realloc(b->s, cap);
    if (!t) {
      b->oom = 1;
      return;
    }
    b->s = t, b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}
static void cx_puts(cx_buf *b, const char *s) { cx_put(b, s, strlen(s)); }

/* The source with comments blanked (newlines kept), so scans see only code
 * and offsets still match the original. */
static char *cx_blank_comments(const char *src) {
  char *t = strdup(src);
  if (!t) return NULL;
  for (char *p = t; *p; p++) {
    if (*p == '"') { /* skip string literals: extern "C" */
      for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
      if (!*p) break;
    } else if (p[0] == '/' && p[1] == '/') {
      for (; *p && *p != '\n'; p++) *p = ' ';
      if (!*p) break;
    } else if (p[0] == '/' && p[1] == '*') {
      char *e = strstr(p + 2, "*/");
      char *end = e ? e + 2 : p + strlen(p);
      for (; p < end; p++)
        if (*p != '\n') *p = ' ';
      p--;
    }
  }
  return t;
}

static int cx_ident(int c) { return isalnum(c) || c == '_'; }

/* The word at p, if it is the whole identifier `w`. */
static int cx_word_at(const char *code, const char *p, const char *w) {
  size_t n = strlen(w);
  return strncmp(p, w, n) == 0 && (p == code || !cx_ident((unsigned char)p[-1])) &&
         !cx_ident((unsigned char)p[n]);
}

static const char *cx_skip_ws(const char *p) {
  while (isspace((unsigned char)*p)) p++;
  return p;
}

/* Names of the __global__ functions: after __global__, the identifier before
 * the first '(' that is not __launch_bounds__'s. */
static int cx_find_kernels(const char *code, cx_module *m) {
  for (const char *p = strstr(code, "__global__"); p; p = strstr(p + 1, "__global__")) {
    if (!cx_word_at(code, p, "__global__")) continue;
    const char *q = p + strlen("__global__"), *name = NULL;
    size_t len = 0;
    while (*q && *q != ';' && *q != '{') {
      q = cx_skip_ws(q);
      if (cx_ident((unsigned char)*q)) {
        const char *s = q;
        while (cx_ident((unsigned char)*q)) q++;
        if ((size_t)(q - s) == strlen("__launch_bounds__") && !strncmp(s, "__launch_bounds__", 17)) {
          q = cx_skip_ws(q);
          for (int depth = 0; *q; q++) {
            depth += (*q == '(') - (*q == ')');
            if (depth == 0 && *q == ')') {
              q++;
              break;
            }
          }
          continue;
        }
        name = s, len = (size_t)(q - s);
      } else if (*q == '(') {
        break;
      } else if (*q) {
        q++;
      }
    }
    if (*q != '(' || !name || len >= sizeof(((cx_kernel *)0)->name)) continue;
    int dup = 0;
    for (int i = 0; i < m->nnames; i++) dup |= strlen(m->names[i]) == len && !strncmp(m->names[i], name, len);
    if (dup) continue;
    char **names = realloc(m->names, (size_t)(m->nnames + 1) * sizeof *names);
    if (!names) return 1;
    m->names = names;
    if (!(m->names[m->nnames] = strndup(name, len))) return 1;
    m->nnames++;
  }
  return 0;
}

/* ---- which kernels need fibers: those that reach a barrier or a warp
 * collective through any chain of calls. Top-level function bodies are found
 * by their braces; a body that names a collective, or a function whose body
 * does, marks its function, until nothing changes. A kernel the scan cannot
 * place runs with fibers (the safe side); a kernel marked wrongly fails its
 * first barrier with a message (cx_launch.c). ---- */

typedef struct cx_fn {
  const char *name, *body, *end;
  size_t len;
  int sync;
} cx_fn;

static int cx_is_collective(const char *id, size_t n) {
  return (n >= 6 && memmem(id, n, "sync", 4)) || (n == 12 && !strncmp(id, "__activemask", 12));
}

/* The identifier that names the function whose body opens at brace b: the
 * one before the '(' that matches the last ')' before b. */
static const char *cx_fn_name(const char *code, const char *b, size_t *len) {
  const char *p = b;
  while (p > code && isspace((unsigned char)p[-1])) p--;
  if (p == code || p[-1] != ')') return NULL;
  int depth = 0;
  for (p--; p >= code; p--) {
    depth += (*p == ')') - (*p == '(');
    if (depth == 0) break;
  }
  if (p < code) return NULL;
  while (p > code && isspace((unsigned char)p[-1])) p--;
  const char *e = p;
  while (p > code && cx_ident((unsigned char)p[-1])) p--;
  *len = (size_t)(e - p);
  return *len ? p : NULL;
}

static int cx_mark_fibers(const char *code, cx_module *m) {
  cx_fn *fn = NULL;
  int nfn = 0, cap = 0;
  for (const char *p = code; *p; p++) {
    if (*p == '"') { /* extern "C" { ... }: its contents are top level */
      const char *q = strchr(p + 1, '"');
      if (!q) break;
      const char *b = cx_skip_ws(q + 1);
      p = *b == '{' ? b : q;
      continue;
    }
    if (*p != '{') continue;
    const char *end = p + 1;
    for (int depth = 1; *end && depth; end++) depth += (*end == '{') - (*end == '}');
    size_t len = 0;
    const char *name = cx_fn_name(code, p, &len);
    if (name) {
      if (nfn == cap) {
        cap = cap ? 2 * cap : 32;
        cx_fn *t = realloc(fn, (size_t)cap * sizeof *t);
        if (!t) {
          free(fn);
          return 1;
        }
        fn = t;
      }
      fn[nfn++] = (cx_fn){name, p, end, len, 0};
    }
    p = end - 1; /* skip the body (or struct) */
    if (!*end) break;
  }
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < nfn; i++) {
      if (fn[i].sync) continue;
      for (const char *q = fn[i].body; q < fn[i].end && !fn[i].sync; q++) {
        if (!cx_ident((unsigned char)*q) || (q > fn[i].body && cx_ident((unsigned char)q[-1]))) continue;
        size_t n = 0;
        while (q + n < fn[i].end && cx_ident((unsigned char)q[n])) n++;
        int hit = cx_is_collective(q, n);
        for (int j = 0; j < nfn && !hit; j++) hit = fn[j].sync && fn[j].len == n && !strncmp(fn[j].name, q, n);
        fn[i].sync = hit;
        q += n - 1;
      }
      changed |= fn[i].sync;
    }
  }
  m->fibers = calloc((size_t)m->nnames, sizeof *m->fibers);
  if (!m->fibers) {
    free(fn);
    return 1;
  }
  for (int k = 0; k < m->nnames; k++) {
    int found = 0;
    for (int i = 0; i < nfn; i++)
      if (fn[i].len == strlen(m->names[k]) && !strncmp(fn[i].name, m->names[k], fn[i].len)) {
        found = 1;
        m->fibers[k] |= fn[i].sync;
      }
    if (!found) m->fibers[k] = 1;
  }
  free(fn);
  return 0;
}

/* `extern __shared__ [__align__(n)] T name[];` -> a macro for the launch's
 * dynamic shared block, valid at any scope. */
static void cx_rewrite_shared(const char *src, const char *code, cx_buf *out) {
  const char *done = src;
  for (const char *p = strstr(code, "extern"); p; p = strstr(p + 1, "extern")) {
    if (!cx_word_at(code, p, "extern")) continue;
    const char *q = cx_skip_ws(p + 6);
    if (!cx_word_at(code, q, "__shared__")) continue;
    const char *semi = strchr(q, ';'), *br = strchr(q, '[');
    if (!semi || !br || br > semi) continue;
    const char *ne = br;
    while (ne > q && isspace((unsigned char)ne[-1])) ne--;
    const char *ns = ne;
    while (ns > q && cx_ident((unsigned char)ns[-1])) ns--;
    /* T: the words between __shared__ and the name, less alignment */
    cx_buf ty = {0};
    for (const char *t = q + 10; t < ns;) {
      if (cx_word_at(code, t, "__align__") || cx_word_at(code, t, "alignas")) {
        while (t < ns && *t != ')') t++;
        if (t < ns) t++;
        continue;
      }
      cx_put(&ty, t, 1);
      t++;
    }
    cx_put(out, src + (done - src), (size_t)(p - code) - (size_t)(done - src));
    char line[512];
    snprintf(line, sizeof line, "\n#undef %.*s\n#define %.*s ((%s *)cx_rt->dyn_shared)\n",
             (int)(ne - ns), src + (ns - code), (int)(ne - ns), src + (ns - code),
             ty.s ? ty.s : "char");
    free(ty.s);
    cx_puts(out, line);
    done = src + (semi + 1 - code);
  }
  cx_puts(out, done);
}

static uint64_t cx_fnv(uint64_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static char *cx_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  cx_buf b = {0};
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cx_put(&b, chunk, n);
  fclose(f);
  if (b.oom || !b.s) {
    free(b.s);
    return b.oom ? NULL : strdup("");
  }
  if (len) *len = b.n;
  return b.s;
}

static int cx_write(const char *path, const char *s) {
  FILE *f = fopen(path, "wb");
  if (!f) return 1;
  size_t n = strlen(s);
  int bad = fwrite(s, 1, n, f) != n;
  return fclose(f) != 0 || bad;
}

static const char *cx_compiler(void) {
  const char *c = getenv("LATHE_CX_CXX");
  return c && *c ? c : CX_CXX;
}

const char *cx_host_compiler(void) {
  const char *c = cx_compiler();
  return *c && !strstr(c, "NOTFOUND") ? c : NULL;
}

/* The first line of the compiler's log that says error (or its first line). */
static void cx_first_error(const char *log, char *out, size_t outlen) {
  const char *line = log ? strstr(log, "error") : NULL;
  if (line) {
    while (line > log && line[-1] != '\n') line--;
  } else {
    line = log ? log : "(no output)";
  }
  size_t n = strcspn(line, "\n");
  snprintf(out, outlen, "%.*s", (int)(n > 200 ? 200 : n), line);
}

/* How every module is compiled (also part of the cache key). No exceptions
 * or RTTI: the module then needs no libstdc++, which dlclose would unload
 * with its allocations (LeakSanitizer reports those). */
static const char *const cx_flags[] = {"-std=c++17", "-O1", "-fPIC", "-shared", "-w", "-fno-exceptions",
                                       "-fno-rtti", "-Wl,--as-needed", "-fno-strict-aliasing",
                                       "-include", "cx_shim.h"};

static int cx_run_compiler(const char *dir, const char *so, char *err, size_t errlen) {
  char src[1300], log[1300], inc[1300];
  snprintf(src, sizeof src, "%s/kernel.cu", dir);
  snprintf(log, sizeof log, "%s/compile.log", dir);
  snprintf(inc, sizeof inc, "-I%s", dir);
  const char *cxx = cx_compiler();
  char *argv[32];
  int n = 0;
  argv[n++] = (char *)cxx;
  for (size_t i = 0; i < sizeof cx_flags / sizeof *cx_flags; i++) argv[n++] = (char *)cx_flags[i];
  char *tail[] = {inc, "-I" CX_SHIM_DIR, "-x", "c++", src, "-o", (char *)so, NULL};
  for (size_t i = 0; i < sizeof tail / sizeof *tail; i++) argv[n++] = tail[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, cxx, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    snprintf(err, errlen, "module_load: cannot run the host compiler '%s': %s", cxx, strerror(rc));
    return 1;
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  char *text = cx_slurp(log, NULL), first[256];
  cx_first_error(text, first, sizeof first);
  free(text);
  snprintf(err, errlen, "module_load: %s rejected the kernel source: %s", cxx, first);
  return 1;
}

static void cx_cache_dir(char *out, size_t outlen) {
  const char *c = getenv("LATHE_CX_CACHE");
  if (c && *c) {
    snprintf(out, outlen, "%s", c);
    return;
  }
  const char *t = getenv("TMPDIR");
  snprintf(out, outlen, "%s/lathe-cuexec-%u", t && *t ? t : "/tmp", (unsigned)getuid());
}

/* The kernel source's .so: from the cache, else compiled into it. */
static int cx_build(const char *full, char *so, size_t solen, char *err, size_t errlen) {
  static const char *const files[] = {"cx_shim.h", "cx_abi.h"};
  uint64_t h = 1469598103934665603ull;
  h = cx_fnv(h, full, strlen(full));
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char path[1200];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/%s", CX_SHIM_DIR, files[i]);
    char *s = cx_slurp(path, &n);
    if (!s) {
      snprintf(err, errlen, "module_load: cannot read the shim %s", path);
      return 1;
    }
    h = cx_fnv(h, s, n);
    free(s);
  }
  const char *cxx = cx_compiler();
  h = cx_fnv(h, cxx, strlen(cxx));
  for (size_t i = 0; i < sizeof cx_flags / sizeof *cx_flags; i++) h = cx_fnv(h, cx_flags[i], strlen(cx_flags[i]) + 1);
  char dir[1024];
  cx_cache_dir(dir, sizeof dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "module_load: cannot create the cache directory %s", dir);
    return 1;
  }
  snprintf(so, solen, "%s/%016llx.so", dir, (unsigned long long)h);
  if (access(so, R_OK) == 0) return 0;

  char tmp[1100], path[1200];
  snprintf(tmp, sizeof tmp, "%s/build-XXXXXX", dir);
  if (!mkdtemp(tmp)) {
    snprintf(err, errlen, "module_load: cannot create a build directory under %s", dir);
    return 1;
  }
  /* NVRTC-side includes the shim already answers */
  static const char *const stubs[] = {"cuda_bf16.h", "cuda_fp16.h", "cuda_runtime.h", "cuda.h"};
  int rc = 0;
  for (size_t i = 0; i < sizeof stubs / sizeof *stubs && !rc; i++) {
    snprintf(path, sizeof path, "%s/%s", tmp, stubs[i]);
    rc = cx_write(path, "#pragma once\n/* cx_shim.h has it */\n");
  }
  snprintf(path, sizeof path, "%s/kernel.cu", tmp);
  if (!rc) rc = cx_write(path, full);
  if (rc) snprintf(err, errlen, "module_load: cannot write the kernel source under %s", tmp);
  char built[1200];
  snprintf(built, sizeof built, "%s/kernel.so", tmp);
  if (!rc) rc = cx_run_compiler(tmp, built, err, errlen);
  if (!rc && rename(built, so) != 0) {
    snprintf(err, errlen, "module_load: cannot move the built module to %s", so);
    rc = 1;
  }
  static const char *const left[] = {"cuda_bf16.h", "cuda_fp16.h", "cuda_runtime.h", "cuda.h",
                                     "kernel.cu", "compile.log", "kernel.so"};
  for (size_t i = 0; i < sizeof left / sizeof *left; i++) {
    snprintf(path, sizeof path, "%s/%s", tmp, left[i]);
    unlink(path);
  }
  rmdir(tmp);
  return rc;
}

int cx_module_load(const char *cuda_src, cx_module **out, char *err, size_t errlen) {
  *out = NULL;
  if (!cuda_src) {
    snprintf(err, errlen, "module_load: no CUDA source (the executor compiles cuda_src, not the image)");
    return 1;
  }
  cx_module *m = calloc(1, sizeof *m);
  char *code = cx_blank_comments(cuda_src);
  cx_buf full = {0};
  int rc = !m || !code;
  if (rc) snprintf(err, errlen, "module_load: out of host memory");
  if (!rc && (rc = cx_find_kernels(code, m)) != 0) snprintf(err, errlen, "module_load: out of host memory");
  if (!rc && m->nnames == 0) {
    snprintf(err, errlen, "module_load: the source defines no __global__ kernel");
    rc = 1;
  }
  if (!rc) {
    rc = cx_mark_fibers(code, m);
    if (rc) snprintf(err, errlen, "module_load: out of host memory");
  }
  if (!rc) {
    cx_puts(&full, "#line 1 \"kernel.cu\"\n");
    cx_rewrite_shared(cuda_src, code, &full);
    cx_puts(&full, "\n/* cx_module.c: launch wrappers */\n");
    for (int i = 0; i < m->nnames; i++) {
      char w[512];
      snprintf(w, sizeof w,
               "CX_EXPORT void cx_w_%s(void **a) { cx_call(%s, a); }\n"
               "CX_EXPORT void cx_p_%s(void **a) { cx_ptrs(%s, a); }\n"
               "CX_EXPORT int cx_n_%s(void) { return cx_nargs(%s); }\n",
               m->names[i], m->names[i], m->names[i], m->names[i], m->names[i], m->names[i]);
      cx_puts(&full, w);
    }
    if (full.oom) {
      snprintf(err, errlen, "module_load: out of host memory");
      rc = 1;
    }
  }
  char so[1200];
  if (!rc) rc = cx_build(full.s, so, sizeof so, err, errlen);
  if (!rc && !(m->dl = dlopen(so, RTLD_NOW | RTLD_LOCAL))) {
    snprintf(err, errlen, "module_load: dlopen %s: %s", so, dlerror());
    rc = 1;
  }
  if (!rc && !(*(void **)&m->bind = dlsym(m->dl, "cx_bind"))) {
    snprintf(err, errlen, "module_load: %s has no cx_bind (not built with cx_shim.h?)", so);
    rc = 1;
  }
  free(code);
  free(full.s);
  if (rc) {
    cx_module_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int cx_module_kernel(cx_module *m, const char *name, cx_kernel **out, char *err, size_t errlen) {
  for (int i = 0; i < m->nk; i++)
    if (!strcmp(m->k[i]->name, name)) {
      *out = m->k[i];
      return 0;
    }
  int known = 0;
  for (int i = 0; i < m->nnames; i++) known |= !strcmp(m->names[i], name);
  if (!known || strlen(name) >= sizeof(((cx_kernel *)0)->name)) {
    char list[160] = "";
    for (int i = 0; i < m->nnames; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", m->names[i]);
    snprintf(err, errlen, "get_function: no kernel '%s' in the module (it has: %s)", name, list);
    return 1;
  }
  cx_kernel *k = calloc(1, sizeof *k);
  cx_kernel **ks = k ? realloc(m->k, (size_t)(m->nk + 1) * sizeof *ks) : NULL;
  if (!ks) {
    free(k);
    snprintf(err, errlen, "get_function: out of host memory");
    return 1;
  }
  m->k = ks;
  char sym[160];
  snprintf(sym, sizeof sym, "cx_w_%s", name);
  *(void **)&k->run = dlsym(m->dl, sym);
  snprintf(sym, sizeof sym, "cx_p_%s", name);
  *(void **)&k->ptrs = dlsym(m->dl, sym);
  snprintf(sym, sizeof sym, "cx_n_%s", name);
  int (*nargs)(void) = NULL;
  *(void **)&nargs = dlsym(m->dl, sym);
  k->nargs = nargs ? nargs() : 0;
  if (!k->run || !k->ptrs || !nargs) {
    free(k);
    snprintf(err, errlen, "get_function: the module lacks the wrappers of kernel '%s'", name);
    return 1;
  }
  snprintf(k->name, sizeof k->name, "%s", name);
  for (int i = 0; i < m->nnames; i++)
    if (!strcmp(m->names[i], name)) k->fibers = m->fibers[i];
  k->mod = m;
  m->k[m->nk++] = k;
  *out = k;
  return 0;
}

void cx_module_free(cx_module *m) {
  if (!m) return;
  for (int i = 0; i < m->nk; i++) free(m->k[i]);
  for (int i = 0; i < m->nnames; i++) free(m->names[i]);
  free(m->fibers);
  free(m->k);
  free(m->names);
  if (m->dl) dlclose(m->dl);
  free(m);
}
