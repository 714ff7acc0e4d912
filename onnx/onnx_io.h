/* onnx_io.h -- ONNX ModelProto files in and out (onnx/onnx_io.c): the types
 * are protoc-c's, generated at build time from Debian's onnx.proto
 * (cmake/onnx.cmake), so every field of the format is there by its
 * onnx.proto name (Onnx__ModelProto, Onnx__GraphProto, Onnx__NodeProto, ...).
 * Internal prefix: ox_. Errors: -1 or NULL with a sentence in msg that names
 * the file and what is wrong; nothing here prints or exits. */
#ifndef LATHE_ONNX_IO_H
#define LATHE_ONNX_IO_H

#include <stddef.h>
#include <stdint.h>
#include "onnx.pb-c.h"

/* The largest file read: protobuf's own 2 GiB limit on one message (larger
 * weights travel as external data files beside the model). */
#define OX_MAX_FILE ((size_t)2 << 30)
/* The deepest nesting of messages accepted (graphs inside attributes inside
 * nodes inside graphs ...): hostile files cannot exhaust the stack. */
#define OX_MAX_DEPTH 48

/* Read and decode path. The wire format is walked first against the
 * schema, so a damaged file is reported with the byte offset and the field
 * (truncated, a length past the end, a wrong wire type, nesting too deep)
 * before protobuf-c decodes it. Free with ox_model_free. */
Onnx__ModelProto *ox_model_read(const char *path, char *msg, size_t msgn);
/* The same from memory (the fuzz target; `name` names it in messages). */
Onnx__ModelProto *ox_model_unpack(const char *name, const uint8_t *buf, size_t len, char *msg, size_t msgn);
void ox_model_free(Onnx__ModelProto *m);

/* Encode m and write it to path atomically (temporary file, fsync, rename).
 * m may be built by hand (onnx__model_proto__init and friends). */
int ox_model_write(const char *path, const Onnx__ModelProto *m, char *msg, size_t msgn);
/* Encode m into a malloc'd buffer (*len bytes). */
int ox_model_pack(const Onnx__ModelProto *m, uint8_t **buf, size_t *len, char *msg, size_t msgn);

/* The data type's name as onnx.proto spells it ("FLOAT", "INT64"); "?" outside
 * the enum. */
const char *ox_dtype_name(int onnx_dtype);

#endif
