/* cg_split.h -- from the finished LLVM module to object files, optimised and
 * generated in parts on several threads (cg_split.c). Internal to
 * codegen/llvm: cg_jit.c builds the module and links the objects. */
#ifndef LATHE_CG_SPLIT_H
#define LATHE_CG_SPLIT_H

#include <stddef.h>

#include <llvm-c/Core.h>

typedef struct {
  const char *triple, *cpu, *features;
  int opt_level; /* 0..3 */
  int keep_ir;   /* keep the optimised text (the cache is not used) */
  int use_cache; /* the on-disk object cache (cg_cache.c), one entry per part */
  int parts;     /* 0: automatic (see cg_split.c); n > 0: at most n parts, whatever the size */
  const char *entry; /* the entry function's name; NULL: "lathe_forward" */
  int pic;           /* position-independent code for a static library (lathe emit); 0: the JIT's */
} cg_target;

typedef struct {
  LLVMMemoryBufferRef *obj; /* nobj object files, for the JIT (which takes each) */
  int nobj;
  int hits;                 /* parts whose object came from the cache */
  char *ir_text;            /* keep_ir: the optimised module, every part (malloc'd) */
  /* Wall time on the critical path: preparing the parts (bitcode, parsing,
   * cache keys and look-ups), then optimisation and code generation of the
   * slowest part. */
  double prep_ms, opt_ms, codegen_ms;
} cg_objects;

/* Set M's target triple and the host's data layout (before verifying and
 * splitting: every part carries them). 0, or -1 with msg. */
int cg_module_target(LLVMModuleRef M, const cg_target *t, char *msg, size_t msgn);

/* Object code for M (verified, with its target triple and data layout set),
 * which is disposed. Kernels (the functions the entry `lathe_forward` calls)
 * are compiled as functions of their own in every build, so a kernel's code
 * does not depend on how the module was split. 0, or -1 with msg. */
int cg_module_objects(LLVMModuleRef M, const cg_target *t, cg_objects *out, char *msg, size_t msgn);

/* Dispose what cg_module_objects made and the JIT did not take. */
void cg_objects_free(cg_objects *o);

#endif
