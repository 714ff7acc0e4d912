/* ox_tensor.h -- ONNX TensorProto decoded into a host array (ox_tensor.c):
 * weights from raw_data, from the typed fields (float_data, int32_data,
 * int64_data, double_data, uint64_data) and from external data files beside
 * the model. Every count and length is checked against the dims first. */
#ifndef LATHE_OX_TENSOR_H
#define LATHE_OX_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "onnx.pb-c.h"

enum { OX_MAXDIM = 8 };

/* A constant: floating types held as double in f, the rest (integers,
 * bool) as int64 in i; exactly one of them is non-NULL (both NULL when
 * n == 0). */
typedef struct {
  int dtype; /* ONNX__TENSOR_PROTO__DATA_TYPE__* */
  int rank;
  int64_t d[OX_MAXDIM];
  int64_t n;
  double *f;
  int64_t *i;
} ox_array;

int ox_is_float(int onnx_dtype);
/* Bytes per element in raw_data; 0 for types Lathe cannot read (STRING, complex). */
int ox_elem_size(int onnx_dtype);

/* Decode t (what = "initializer 'w'" etc. for messages); base_dir: where
 * external data files are looked up (NULL: the current directory). */
int ox_tensor_decode(const Onnx__TensorProto *t, const char *base_dir, ox_array *a, char *msg, size_t msgn);
void ox_array_free(ox_array *a);
/* An array of n elements of the dtype, zeroed; rank/d left for the caller. */
int ox_array_alloc(ox_array *a, int dtype, int64_t n);
/* The value of element k as a double / an int64, whichever storage it has. */
double ox_get_f(const ox_array *a, int64_t k);
int64_t ox_get_i(const ox_array *a, int64_t k);

#endif
