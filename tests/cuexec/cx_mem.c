/* cx_mem.c: device memory of the CPU executor. Each allocation is its own
 * mapping with an inaccessible page on either side, its end placed against
 * the upper guard page, so a kernel that reads or writes past an end faults at
 * once and cx_launch.c names the allocation and the offset. The few bytes of
 * slack (ends are rounded to 16 for float4 alignment) hold a canary checked
 * after every launch. Fresh memory is filled with 0xff bytes (NaN as f32),
 * as cuMemAlloc promises nothing: a plan that reads before it writes shows. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cx.h"

enum { CX_CANARY = 0xcb, CX_FRESH = 0xff };

static size_t cx_page(void) { return (size_t)sysconf(_SC_PAGESIZE); }
static size_t cx_round(size_t x, size_t to) { return (x + to - 1) / to * to; }

int cx_mem_alloc(cx_mem *m, size_t bytes, cu_dptr *out, char *err, size_t errlen) {
  if (bytes == 0) {
    snprintf(err, errlen, "mem_alloc: 0 bytes asked (cuMemAlloc refuses a size of 0)");
    return 1;
  }
  if (bytes > m->limit || m->in_use > m->limit - bytes) {
    snprintf(err, errlen, "mem_alloc: out of device memory: %zu bytes asked, %zu of %zu in use",
             bytes, m->in_use, m->limit);
    return 1;
  }
  size_t page = cx_page(), span = cx_round(bytes, 16), data = cx_round(span, page);
  size_t len = data + 2 * page;
  unsigned char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    snprintf(err, errlen, "mem_alloc: mmap of %zu bytes failed", len);
    return 1;
  }
  if (mprotect(map, page, PROT_NONE) || mprotect(map + page + data, page, PROT_NONE)) {
    munmap(map, len);
    snprintf(err, errlen, "mem_alloc: mprotect of the guard pages failed");
    return 1;
  }
  if (m->n == m->cap) {
    int cap = m->cap ? 2 * m->cap : 16;
    cx_alloc *a = realloc(m->a, (size_t)cap * sizeof *a);
    if (!a) {
      munmap(map, len);
      snprintf(err, errlen, "mem_alloc: out of host memory");
      return 1;
    }
    m->a = a, m->cap = cap;
  }
  cx_alloc *a = &m->a[m->n++];
  a->map = map, a->map_len = len, a->bytes = bytes, a->span = span, a->id = ++m->next_id;
  a->base = map + page + data - span;
  memset(map + page, CX_CANARY, (size_t)(a->base - (map + page)));
  memset(a->base, CX_FRESH, bytes);
  memset(a->base + bytes, CX_CANARY, span - bytes);
  m->in_use += bytes;
  *out = (cu_dptr)(uintptr_t)a->base;
  return 0;
}

int cx_mem_free(cx_mem *m, cu_dptr p, char *err, size_t errlen) {
  if (p == 0) return 0;
  for (int i = 0; i < m->n; i++) {
    if ((uintptr_t)m->a[i].base != p) continue;
    munmap(m->a[i].map, m->a[i].map_len);
    m->in_use -= m->a[i].bytes;
    m->a[i] = m->a[--m->n];
    return 0;
  }
  const cx_alloc *in = cx_mem_find(m, p);
  if (in)
    snprintf(err, errlen, "mem_free: 0x%llx is inside allocation #%d (offset %llu), not its start",
             (unsigned long long)p, in->id, (unsigned long long)(p - (uintptr_t)in->base));
  else
    snprintf(err, errlen, "mem_free: 0x%llx is not a device allocation (freed twice?)",
             (unsigned long long)p);
  return 1;
}

void cx_mem_release(cx_mem *m) {
  for (int i = 0; i < m->n; i++) munmap(m->a[i].map, m->a[i].map_len);
  free(m->a);
  m->a = NULL, m->n = m->cap = 0, m->in_use = 0;
}

const cx_alloc *cx_mem_find(const cx_mem *m, uint64_t p) {
  for (int i = 0; i < m->n; i++)
    if (p >= (uintptr_t)m->a[i].base && p < (uintptr_t)m->a[i].base + m->a[i].bytes) return &m->a[i];
  return NULL;
}

int cx_mem_check(const cx_mem *m, uint64_t p, size_t bytes, const char *what, char *err,
                 size_t errlen) {
  const cx_alloc *a = cx_mem_find(m, p);
  if (!a) {
    snprintf(err, errlen, "%s 0x%llx (%zu bytes) is not inside any device allocation", what,
             (unsigned long long)p, bytes);
    return 1;
  }
  uint64_t off = p - (uintptr_t)a->base;
  if (bytes > a->bytes - off) {
    snprintf(err, errlen,
             "%s runs %llu bytes past the end of allocation #%d (%zu bytes; the range is "
             "[%llu, %llu))", what, (unsigned long long)(off + bytes - a->bytes), a->id, a->bytes,
             (unsigned long long)off, (unsigned long long)(off + bytes));
    return 1;
  }
  return 0;
}

int cx_mem_describe_fault(const cx_mem *m, uint64_t addr, char *out, size_t outlen) {
  size_t page = cx_page();
  for (int i = 0; i < m->n; i++) {
    const cx_alloc *a = &m->a[i];
    uint64_t base = (uintptr_t)a->base, lo = (uintptr_t)a->map, hi = lo + a->map_len;
    if (addr < lo || addr >= hi) continue;
    if (addr < lo + page) {
      snprintf(out, outlen, "%llu bytes before the start of allocation #%d (%zu bytes)",
               (unsigned long long)(base - addr), a->id, a->bytes);
      return 1;
    }
    if (addr >= base + a->span) {
      snprintf(out, outlen, "byte %llu of allocation #%d, which has %zu bytes (%llu past its end)",
               (unsigned long long)(addr - base), a->id, a->bytes,
               (unsigned long long)(addr - base - a->bytes));
      return 1;
    }
  }
  return 0;
}

static int cx_all_canary(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != CX_CANARY) return 0;
  return 1;
}

int cx_mem_check_canaries(const cx_mem *m, char *err, size_t errlen) {
  size_t page = cx_page();
  for (int i = 0; i < m->n; i++) {
    const cx_alloc *a = &m->a[i];
    if (!cx_all_canary(a->base + a->bytes, a->span - a->bytes)) {
      snprintf(err, errlen, "a kernel wrote within 16 bytes past the end of allocation #%d (%zu bytes)",
               a->id, a->bytes);
      return 1;
    }
    if (!cx_all_canary(a->map + page, (size_t)(a->base - (a->map + page)))) {
      snprintf(err, errlen, "a kernel wrote before the start of allocation #%d (%zu bytes)", a->id,
               a->bytes);
      return 1;
    }
  }
  return 0;
}
