/* runtime.h -- files and buffers: .npy arrays, safetensors weight files,
 * atomic writes, dtype conversion. Internal prefix: rt_.
 *
 * Every function reports a user error by returning -1 and writing a message
 * that names the file (and tensor where there is one) into msg[0..msgn).
 * Nothing here exits, aborts or prints. Malformed, truncated or hostile files
 * must give an error, never a crash or an out-of-bounds read.
 */
#ifndef LATHE_RUNTIME_H
#define LATHE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include "lathe.h"

/* ---- runtime/atomic.c: write a whole file atomically (temp file in the same
 * directory, fsync, rename). ---- */
typedef struct {
  const void *data;
  size_t len;
} rt_chunk;
/* A symbolic link at path is followed (the file it names is replaced); a
 * FIFO, device or /proc link (/dev/stdout) is written straight through. */
int rt_write_atomic(const char *path, const rt_chunk *chunks, int nchunks, char *msg, size_t msgn);
/* Would rt_write_atomic(path) be allowed to write? Checked before long work
 * (training) so a bad path fails at once, not after the work. */
int rt_check_writable(const char *path, char *msg, size_t msgn);
/* Read a whole file into a malloc'd buffer (NUL-terminated for convenience). */
int rt_read_file(const char *path, char **data, size_t *len, char *msg, size_t msgn);

/* ---- runtime/convert.c ---- */
float rt_f16_to_f32(uint16_t h);
uint16_t rt_f32_to_f16(float f);      /* round to nearest even */
float rt_bf16_to_f32(uint16_t h);
uint16_t rt_f32_to_bf16(float f);     /* round to nearest even */
/* Convert n elements between any two dtypes (float<->int truncates toward
 * zero as C does; bool is 0/1). */
void rt_convert(const void *src, lathe_dtype st, void *dst, lathe_dtype dt, int64_t n);

/* ---- runtime/npy.c: NumPy .npy v1/v2/v3, little-endian, C order. Accepted
 * descr: <f4 <f2 <i4 <i8 |i1 |u1 |b1 (and <f8, converted to f32 on read). */
int rt_npy_read(const char *path, lathe_tensor *out, char *msg, size_t msgn);
/* The same from memory: takes buf (malloc'd, len bytes), which becomes
 * out->data or is freed on error; path is used in messages. */
int rt_npy_parse(const char *path, char *buf, size_t len, lathe_tensor *out, char *msg, size_t msgn);
int rt_npy_write(const char *path, const lathe_tensor *t, char *msg, size_t msgn);

/* ---- runtime/safetensors.c: header parsed with json-c ---- */
typedef struct {
  char *name;
  lathe_tensor t;   /* data owned by the file object */
} rt_st_entry;

typedef struct {
  rt_st_entry *e;
  int n;
  char **meta;      /* the header's "__metadata__": key, value, key, value ... */
  int nmeta;        /* pairs */
} rt_st_file;

int rt_st_read(const char *path, rt_st_file *out, char *msg, size_t msgn);
/* The same from a file image in memory (path only names it in messages). */
int rt_st_read_mem(const char *path, const void *buf, size_t len, rt_st_file *out, char *msg, size_t msgn);
/* -1 (and a message naming path and the tensor) when a float tensor holds a
 * NaN or an infinity. */
int rt_st_check_finite(const char *path, const rt_st_entry *e, char *msg, size_t msgn);
int rt_st_write(const char *path, const rt_st_entry *entries, int n, char *msg, size_t msgn);
/* The same with nmeta "__metadata__" pairs meta[2i] (key), meta[2i+1] (value). */
int rt_st_write_meta(const char *path, const rt_st_entry *entries, int n, const char *const *meta, int nmeta,
                     char *msg, size_t msgn);
/* The value of metadata key in f; NULL if the file has none. */
const char *rt_st_meta(const rt_st_file *f, const char *key);
void rt_st_free(rt_st_file *f);
const rt_st_entry *rt_st_find(const rt_st_file *f, const char *name);

#endif
