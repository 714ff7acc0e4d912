/* rt_sft.h -- safetensors files inside liblathe_rt (rt_sft.c), for emitted
 * training steps (MODEL_state_save / MODEL_state_load) in programs that have
 * no Lathe, no LLVM and no JSON library. The files are the ones `lathe train`
 * writes (runtime/safetensors.c): u64 little-endian N, N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"key": "value"}}
 * padded with spaces, then the data section (offsets relative to it).
 * The writer builds the header by hand and writes atomically (temporary file
 * in the same directory, fsync, rename); the reader is a small strict parser
 * of exactly that grammar that checks every entry (dtype, shape, offsets
 * inside the data and matching the shape, no overlap, no repeated name)
 * before anyone sees a tensor. Internal prefix: rt_sft_. */
#ifndef LATHE_RT_SFT_H
#define LATHE_RT_SFT_H

#include <stddef.h>
#include <stdint.h>

enum { RT_SFT_MAXDIM = 8 };

/* The dtypes a file may hold, in ir/ir.h's ir_dtype order for the first
 * eight (F32 F16 BF16 I32 I64 I8 U8 BOOL), then F64. */
enum { RT_SFT_F32, RT_SFT_F16, RT_SFT_BF16, RT_SFT_I32, RT_SFT_I64, RT_SFT_I8, RT_SFT_U8, RT_SFT_BOOL, RT_SFT_F64,
       RT_SFT_NDTYPES };

typedef struct {
  const char *name;
  int dtype;                      /* RT_SFT_* */
  int rank;
  int64_t shape[RT_SFT_MAXDIM];
  const void *data;               /* reading: inside the file's buffer (unaligned); writing: the caller's */
  int64_t bytes;
} rt_sft_tensor;

typedef struct {
  int n;
  rt_sft_tensor *t;
  unsigned char *buf; /* the whole file */
  char *names;        /* the decoded names */
} rt_sft_file;

/* "F32" for RT_SFT_F32 ...; NULL outside the enum. */
const char *rt_sft_dtype_name(int dtype);
int64_t rt_sft_dtype_size(int dtype);

/* Write the n tensors (names unique, given in order) to path atomically.
 * 0, or -1 with a sentence in msg naming the file. */
int rt_sft_write(const char *path, const rt_sft_tensor *t, int n, char *msg, size_t msgn);

/* Read and check path into f (free with rt_sft_free; f is zeroed on
 * failure). 0, or -1 with msg naming the file and what is wrong. */
int rt_sft_read(const char *path, rt_sft_file *f, char *msg, size_t msgn);
/* The same on a buffer of len bytes, which f takes (freed on failure too). */
int rt_sft_parse(const char *path, unsigned char *buf, size_t len, rt_sft_file *f, char *msg, size_t msgn);

const rt_sft_tensor *rt_sft_find(const rt_sft_file *f, const char *name);
void rt_sft_free(rt_sft_file *f);

#endif
