/* cu_modules.c -- a rendered program's kernels as modules: the unique
 * functions cut into parts of about equal size, each part the prelude and
 * its functions, compiled by NVRTC on its own thread (NVRTC programs are
 * independent), so a program's compile takes about the time of its largest
 * part on enough cores. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cuda/cu.h"
#include "runtime/runtime.h"

typedef struct {
  const char *src, *arch;
  char name[32];
  cu_image *img;
  int rc;
  char msg[4096];
} cu_job;

static void *compile_job(void *arg) {
  cu_job *j = arg;
  j->rc = cu_nvrtc_compile(j->src, j->name, j->arch, j->img, j->msg, sizeof j->msg);
  return NULL;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int lines_in(const char *s) {
  int k = 0;
  for (; *s; s++) k += *s == '\n';
  return k;
}

/* The function of module m whose text holds line `line` (1-based) of the
 * module's source, or -1: NVRTC's log names lines ("module03.cu(120):
 * error: ..."), the user wants the kernel. The module is the prelude, then
 * each of its functions after a newline. */
static int fn_at_line(const cu_program *cp, const int *mod_of, int m, long line) {
  long at = lines_in(cu_prelude) + 1; /* the empty line of the newline before the first function */
  for (int f = 0; f < cp->nfn; f++) {
    if (mod_of[f] != m) continue;
    long last = at + lines_in(cp->fn[f].src); /* every function's text ends in a newline */
    if (line > at && line <= last) return f;
    at = last + 1;
  }
  return -1;
}

/* NVRTC's refusal of module m, naming the kernel of its first error. */
static int rejected(const cu_program *cp, const int *mod_of, int m, const cu_job *j, char *msg, size_t n) {
  const char *at = strstr(j->msg, j->name);
  while (at && at[strlen(j->name)] != '(') at = strstr(at + 1, j->name);
  int f = at ? fn_at_line(cp, mod_of, m, strtol(at + strlen(j->name) + 1, NULL, 10)) : -1;
  if (f < 0) return ir_fail(msg, n, "%s", j->msg);
  return ir_fail(msg, n, "NVRTC rejected kernel %s (plan kernel k%d): %s", cp->fn[f].name, cp->fn[f].pk, j->msg);
}

int cu_modules_build(const cu_program *cp, const char *arch, int nparts, cu_modules *out, char *msg, size_t n) {
  memset(out, 0, sizeof *out);
  if (cp->nfn == 0) { /* launches of the driver's only (a pipeline stage's receiver: one ncclRecv): no module */
    out->mod_of = calloc(1, sizeof *out->mod_of);
    return out->mod_of ? 0 : ir_fail(msg, n, "out of memory for the CUDA modules");
  }
  if (nparts <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    nparts = c > 0 ? (int)c : 1;
  }
  if (nparts > 64) nparts = 64;
  if (nparts > cp->nfn) nparts = cp->nfn;
  if (nparts < 1) nparts = 1;
  out->nmod = nparts;
  out->src = calloc((size_t)nparts, sizeof *out->src);
  out->img = calloc((size_t)nparts, sizeof *out->img);
  out->mod_of = calloc((size_t)cp->nfn + 1, sizeof *out->mod_of);
  cu_job *jobs = calloc((size_t)nparts, sizeof *jobs);
  pthread_t *th = calloc((size_t)nparts, sizeof *th);
  if (!out->src || !out->img || !out->mod_of || !jobs || !th) {
    free(jobs), free(th);
    cu_modules_free(out);
    return ir_fail(msg, n, "out of memory for the CUDA modules");
  }
  /* contiguous runs of functions, balanced by source length */
  size_t total = 0, acc = 0;
  for (int f = 0; f < cp->nfn; f++) total += strlen(cp->fn[f].src);
  for (int f = 0, m = 0; f < cp->nfn; f++) {
    size_t len = strlen(cp->fn[f].src);
    if (m + 1 < nparts && acc > 0 && (acc + len / 2) * (size_t)nparts > total * (size_t)(m + 1)) m++;
    out->mod_of[f] = m;
    acc += len;
  }
  int rc = 0;
  for (int m = 0; m < nparts && !rc; m++) {
    size_t len = strlen(cu_prelude) + 1;
    for (int f = 0; f < cp->nfn; f++)
      if (out->mod_of[f] == m) len += strlen(cp->fn[f].src) + 1;
    char *s = malloc(len);
    if (!s) { rc = ir_fail(msg, n, "out of memory for the CUDA modules"); break; }
    size_t w = 0;
    memcpy(s, cu_prelude, strlen(cu_prelude)), w = strlen(cu_prelude);
    for (int f = 0; f < cp->nfn; f++)
      if (out->mod_of[f] == m) {
        s[w++] = '\n';
        memcpy(s + w, cp->fn[f].src, strlen(cp->fn[f].src)), w += strlen(cp->fn[f].src);
      }
    s[w] = 0;
    out->src[m] = s;
  }
  double t0 = now_ms();
  int started = 0;
  for (int m = 0; m < nparts && !rc; m++, started++) {
    jobs[m].src = out->src[m], jobs[m].arch = arch, jobs[m].img = &out->img[m];
    snprintf(jobs[m].name, sizeof jobs[m].name, "module%02d.cu", m);
    if (nparts == 1 || pthread_create(&th[m], NULL, compile_job, &jobs[m])) {
      compile_job(&jobs[m]);
      th[m] = 0;
    }
  }
  for (int m = 0; m < started; m++)
    if (th[m]) pthread_join(th[m], NULL);
  out->wall_ms = now_ms() - t0;
  for (int m = 0; m < started && !rc; m++) {
    if (jobs[m].rc) rc = rejected(cp, out->mod_of, m, &jobs[m], msg, n);
    out->cache_hits += out->img[m].cache_hit;
  }
  free(jobs);
  free(th);
  if (rc) cu_modules_free(out);
  return rc;
}

void cu_modules_free(cu_modules *m) {
  if (!m) return;
  for (int i = 0; m->src && i < m->nmod; i++) free(m->src[i]);
  for (int i = 0; m->img && i < m->nmod; i++) cu_image_free(&m->img[i]);
  free(m->src);
  free(m->img);
  free(m->mod_of);
  memset(m, 0, sizeof *m);
}

int cu_modules_dump(const cu_modules *m, const char *dir, char *msg, size_t n) {
  for (int i = 0; i < m->nmod; i++) {
    char path[4096], emsg[512];
    snprintf(path, sizeof path, "%s/module%02d.cu", dir, i);
    rt_chunk c = {m->src[i], strlen(m->src[i])};
    if (rt_write_atomic(path, &c, 1, emsg, sizeof emsg)) return ir_fail(msg, n, "--dump-dir: %s", emsg);
    snprintf(path, sizeof path, "%s/module%02d.%s", dir, i, m->img[i].is_ptx ? "ptx" : "cubin");
    rt_chunk d = {m->img[i].image, m->img[i].len};
    if (rt_write_atomic(path, &d, 1, emsg, sizeof emsg)) return ir_fail(msg, n, "--dump-dir: %s", emsg);
  }
  return 0;
}
