/* onnx_io.c -- ONNX files in and out. protobuf-c decodes, but says nothing
 * about why a buffer does not decode, and recurses once per nested message;
 * so every buffer is first walked here against the generated schema (field
 * numbers, wire types, lengths, nesting depth), which turns a damaged file
 * into a message with the byte offset and field, and bounds the recursion
 * before protobuf-c runs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "runtime/runtime.h"

typedef struct {
  const char *name;    /* the file, for messages */
  const uint8_t *base; /* the whole buffer: offsets in messages are from here */
  char *msg;
  size_t msgn;
} walker;

static int fail(walker *w, const char *fmt, ...) {
  int k = snprintf(w->msg, w->msgn, "%s: not a valid ONNX model: ", w->name);
  if (k < 0 || (size_t)k >= w->msgn) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->msg + k, w->msgn - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

/* 0, or -1 when the varint runs past n or past 10 bytes. */
static int varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (int s = 0; s < 70 && *pos < n; s += 7) {
    uint8_t b = p[(*pos)++];
    r |= (uint64_t)(b & 0x7f) << (s < 64 ? s : 0);
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

/* The wire type a field of this type is written with (unpacked). */
static int wire_of(ProtobufCType t) {
  static const signed char wt[] = {
    [PROTOBUF_C_TYPE_INT32] = 0, [PROTOBUF_C_TYPE_SINT32] = 0, [PROTOBUF_C_TYPE_SFIXED32] = 5,
    [PROTOBUF_C_TYPE_INT64] = 0, [PROTOBUF_C_TYPE_SINT64] = 0, [PROTOBUF_C_TYPE_SFIXED64] = 1,
    [PROTOBUF_C_TYPE_UINT32] = 0, [PROTOBUF_C_TYPE_FIXED32] = 5, [PROTOBUF_C_TYPE_UINT64] = 0,
    [PROTOBUF_C_TYPE_FIXED64] = 1, [PROTOBUF_C_TYPE_FLOAT] = 5, [PROTOBUF_C_TYPE_DOUBLE] = 1,
    [PROTOBUF_C_TYPE_BOOL] = 0, [PROTOBUF_C_TYPE_ENUM] = 0, [PROTOBUF_C_TYPE_STRING] = 2,
    [PROTOBUF_C_TYPE_BYTES] = 2, [PROTOBUF_C_TYPE_MESSAGE] = 2,
  };
  return (unsigned)t < sizeof wt ? wt[t] : -1;
}

static int walk(walker *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth) {
  if (depth > OX_MAX_DEPTH)
    return fail(w, "messages nested more than %d deep at byte %zu", OX_MAX_DEPTH, (size_t)(p - w->base));
  size_t pos = 0;
  while (pos < n) {
    size_t at = (size_t)(p - w->base) + pos;
    uint64_t key, v;
    if (varint(p, n, &pos, &key)) return fail(w, "truncated field key at byte %zu in %s", at, d->short_name);
    uint64_t num = key >> 3;
    int wt = (int)(key & 7);
    if (num == 0 || num > 536870911u) return fail(w, "field number 0 or out of range at byte %zu in %s", at, d->short_name);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, (unsigned)num);
    const char *fname = f ? f->name : "(unknown)";
    if (f && wt != wire_of(f->type) && !(wt == 2 && f->label == PROTOBUF_C_LABEL_REPEATED))
      return fail(w, "field '%s' of %s at byte %zu has wire type %d, expected %d (wrong type)", fname,
                  d->short_name, at, wt, wire_of(f->type));
    switch (wt) {
    case 0:
      if (varint(p, n, &pos, &v)) return fail(w, "truncated value of field '%s' at byte %zu", fname, at);
      break;
    case 1:
    case 5: {
      size_t k = wt == 1 ? 8 : 4;
      if (n - pos < k) return fail(w, "truncated value of field '%s' at byte %zu", fname, at);
      pos += k;
      break;
    }
    case 2:
      if (varint(p, n, &pos, &v)) return fail(w, "truncated length of field '%s' at byte %zu", fname, at);
      if (v > n - pos)
        return fail(w, "field '%s' of %s at byte %zu has length %llu, past the end (%zu bytes left; truncated file?)",
                    fname, d->short_name, at, (unsigned long long)v, n - pos);
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          walk(w, (const ProtobufCMessageDescriptor *)f->descriptor, p + pos, (size_t)v, depth + 1))
        return -1;
      pos += (size_t)v;
      break;
    default:
      return fail(w, "unsupported wire type %d (field '%s' of %s) at byte %zu", wt, fname, d->short_name, at);
    }
  }
  return 0;
}

Onnx__ModelProto *ox_model_unpack(const char *name, const uint8_t *buf, size_t len, char *msg, size_t msgn) {
  walker w = {name, buf, msg, msgn};
  if (len == 0) {
    fail(&w, "the file is empty");
    return NULL;
  }
  if (len > OX_MAX_FILE) {
    fail(&w, "%zu bytes is over protobuf's 2 GiB limit (large weights belong in external data files)", len);
    return NULL;
  }
  if (walk(&w, &onnx__model_proto__descriptor, buf, len, 0)) return NULL;
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
  if (!m) fail(&w, "protobuf-c could not decode it (an enum or packed field out of range?)");
  return m;
}

Onnx__ModelProto *ox_model_read(const char *path, char *msg, size_t msgn) {
  char *data = NULL;
  size_t len = 0;
  if (rt_read_file(path, &data, &len, msg, msgn)) return NULL;
  Onnx__ModelProto *m = ox_model_unpack(path, (const uint8_t *)data, len, msg, msgn);
  free(data);
  return m;
}

void ox_model_free(Onnx__ModelProto *m) {
  if (m) onnx__model_proto__free_unpacked(m, NULL);
}

int ox_model_pack(const Onnx__ModelProto *m, uint8_t **buf, size_t *len, char *msg, size_t msgn) {
  size_t n = onnx__model_proto__get_packed_size(m);
  if (n > OX_MAX_FILE) {
    snprintf(msg, msgn, "the ONNX model is %zu bytes, over protobuf's 2 GiB limit", n);
    return -1;
  }
  uint8_t *b = malloc(n ? n : 1);
  if (!b) {
    snprintf(msg, msgn, "out of memory encoding the ONNX model (%zu bytes)", n);
    return -1;
  }
  *len = onnx__model_proto__pack(m, b);
  *buf = b;
  return 0;
}

int ox_model_write(const char *path, const Onnx__ModelProto *m, char *msg, size_t msgn) {
  uint8_t *b;
  size_t n;
  if (ox_model_pack(m, &b, &n, msg, msgn)) return -1;
  rt_chunk c = {b, n};
  int r = rt_write_atomic(path, &c, 1, msg, msgn);
  free(b);
  return r;
}

const char *ox_dtype_name(int t) {
  static const char *names[] = {
    "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
    "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
  };
  return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "?";
}
