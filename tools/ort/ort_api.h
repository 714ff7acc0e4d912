/* ort_api.h -- the few entry points of ONNX Runtime's C API that lathe_ort
 * calls, declared here so the build needs no ONNX Runtime headers: the
 * library is found and loaded with dlopen at run time (the npm package
 * onnxruntime-node ships libonnxruntime.so, setup.sh installs it), and a
 * machine without it still builds and skips the tests that need it.
 *
 * OrtApi is a table of function pointers read by position, and ONNX Runtime
 * only ever appends to it, so the positions below hold for every release
 * since API version 13 (the version asked for). Entries lathe_ort does not
 * call are void* placeholders; the comment on each run gives its indices. */
#ifndef LATHE_ORT_API_H
#define LATHE_ORT_API_H

#include <stddef.h>
#include <stdint.h>

#define ORTX_API_VERSION 13

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtSession OrtSession;
typedef struct OrtValue OrtValue;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtAllocator OrtAllocator;

/* TensorProto.DataType's numbering */
enum {
  ORTX_FLOAT = 1, ORTX_UINT8 = 2, ORTX_INT8 = 3, ORTX_INT32 = 6, ORTX_INT64 = 7, ORTX_BOOL = 9,
  ORTX_FLOAT16 = 10, ORTX_DOUBLE = 11, ORTX_BFLOAT16 = 16
};
enum { ORTX_LOG_WARNING = 2, ORTX_LOG_ERROR = 3 };
enum { ORTX_OPT_NONE = 0, ORTX_OPT_BASIC = 1, ORTX_OPT_EXTENDED = 2, ORTX_OPT_ALL = 99 };
enum { ORTX_SEQUENTIAL = 0 };
enum { ORTX_ARENA_ALLOCATOR = 1, ORTX_MEM_DEFAULT = 0 };

typedef OrtStatus *ortx_status;

typedef struct OrtApi {
  void *gap0[2];                                                              /* 0-1 */
  const char *(*GetErrorMessage)(const OrtStatus *status);                    /* 2 */
  ortx_status (*CreateEnv)(int log_level, const char *logid, OrtEnv **out);   /* 3 */
  void *gap4[3];                                                              /* 4-6 */
  ortx_status (*CreateSession)(const OrtEnv *env, const char *path, const OrtSessionOptions *o,
                               OrtSession **out);                            /* 7 */
  void *gap8;                                                                 /* 8 */
  ortx_status (*Run)(OrtSession *s, const OrtRunOptions *ro, const char *const *in_names,
                     const OrtValue *const *in, size_t nin, const char *const *out_names, size_t nout,
                     OrtValue **out);                                        /* 9 */
  ortx_status (*CreateSessionOptions)(OrtSessionOptions **out);              /* 10 */
  void *gap11[2];                                                             /* 11-12 */
  ortx_status (*SetSessionExecutionMode)(OrtSessionOptions *o, int mode);    /* 13 */
  void *gap14[9];                                                             /* 14-22 */
  ortx_status (*SetSessionGraphOptimizationLevel)(OrtSessionOptions *o, int level); /* 23 */
  ortx_status (*SetIntraOpNumThreads)(OrtSessionOptions *o, int n);          /* 24 */
  ortx_status (*SetInterOpNumThreads)(OrtSessionOptions *o, int n);          /* 25 */
  void *gap26[4];                                                             /* 26-29 */
  ortx_status (*SessionGetInputCount)(const OrtSession *s, size_t *out);     /* 30 */
  ortx_status (*SessionGetOutputCount)(const OrtSession *s, size_t *out);    /* 31 */
  void *gap32;                                                                /* 32 */
  ortx_status (*SessionGetInputTypeInfo)(const OrtSession *s, size_t i, OrtTypeInfo **out); /* 33 */
  void *gap34[2];                                                             /* 34-35 */
  ortx_status (*SessionGetInputName)(const OrtSession *s, size_t i, OrtAllocator *a, char **out); /* 36 */
  ortx_status (*SessionGetOutputName)(const OrtSession *s, size_t i, OrtAllocator *a, char **out); /* 37 */
  void *gap38[11];                                                            /* 38-48 */
  ortx_status (*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo *info, void *data, size_t len,
                                                const int64_t *shape, size_t rank, int type,
                                                OrtValue **out);             /* 49 */
  void *gap50;                                                                /* 50 */
  ortx_status (*GetTensorMutableData)(OrtValue *v, void **out);              /* 51 */
  void *gap52[3];                                                             /* 52-54 */
  ortx_status (*CastTypeInfoToTensorInfo)(const OrtTypeInfo *t, const OrtTensorTypeAndShapeInfo **out); /* 55 */
  void *gap56[4];                                                             /* 56-59 */
  ortx_status (*GetTensorElementType)(const OrtTensorTypeAndShapeInfo *t, int *out); /* 60 */
  ortx_status (*GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *t, size_t *out); /* 61 */
  ortx_status (*GetDimensions)(const OrtTensorTypeAndShapeInfo *t, int64_t *dims, size_t n); /* 62 */
  void *gap63[2];                                                             /* 63-64 */
  ortx_status (*GetTensorTypeAndShape)(const OrtValue *v, OrtTensorTypeAndShapeInfo **out); /* 65 */
  void *gap66[3];                                                             /* 66-68 */
  ortx_status (*CreateCpuMemoryInfo)(int type, int mem_type, OrtMemoryInfo **out); /* 69 */
  void *gap70[6];                                                             /* 70-75 */
  ortx_status (*AllocatorFree)(OrtAllocator *a, void *p);                    /* 76 */
  void *gap77;                                                                /* 77 */
  ortx_status (*GetAllocatorWithDefaultOptions)(OrtAllocator **out);         /* 78 */
  void *gap79[13];                                                            /* 79-91 */
  void (*ReleaseEnv)(OrtEnv *);                                               /* 92 */
  void (*ReleaseStatus)(OrtStatus *);                                         /* 93 */
  void (*ReleaseMemoryInfo)(OrtMemoryInfo *);                                 /* 94 */
  void (*ReleaseSession)(OrtSession *);                                       /* 95 */
  void (*ReleaseValue)(OrtValue *);                                           /* 96 */
  void (*ReleaseRunOptions)(OrtRunOptions *);                                 /* 97 */
  void (*ReleaseTypeInfo)(OrtTypeInfo *);                                     /* 98 */
  void (*ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *);         /* 99 */
  void (*ReleaseSessionOptions)(OrtSessionOptions *);                         /* 100 */
} OrtApi;

typedef struct OrtApiBase {
  const OrtApi *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} OrtApiBase;

#endif
