/* cg_llvm_compat.h -- every difference between the LLVM versions the CPU
 * backend builds against (CMake's LATHE_LLVM_VERSION: 19, the default, or
 * 14), in one place. The rest of codegen/llvm is written in the C API both
 * versions share, so it needs no version tests: opaque-pointer style (one
 * `ptr` type, LLVMBuildLoad2, LLVMBuildGEP2, LLVMBuildCall2: typed pointers
 * are gone in 17+), the new pass manager (LLVMRunPasses: the legacy pass
 * manager's C API is gone in 17+) and ORC's LLJIT with absolute symbols.
 *
 * What 19 has and 14 lacks, and what Lathe makes of it:
 * - LLVMGetHostCPUName knows this machine's AMD EPYC (znver5, its scheduling
 *   model); 14 says "generic". Both find the same features (AVX-512
 *   included), so the code differs in scheduling only: asked of either.
 * - LLVMSetFastMathFlags (C API since 18). Not used: `contract` on every
 *   fadd/fsub/fmul measured no faster within the benchmark's noise
 *   (docs/compiling.md; the hot loops already ask for llvm.fmuladd), and it
 *   would break the bit-for-bit agreement with the reference interpreter
 *   that the random ops and the fixed-order reductions keep on purpose;
 *   `reassoc`, nnan and ninf would break it more (reductions reordered,
 *   check_finite and NaN-winning max folded away). */
#ifndef LATHE_CG_LLVM_COMPAT_H
#define LATHE_CG_LLVM_COMPAT_H

#include <llvm/Config/llvm-config.h>

#if LLVM_VERSION_MAJOR < 14
#error "the CPU backend needs LLVM 14 or newer (CMake: -DLATHE_LLVM_VERSION=19 or 14)"
#endif

/* "19.1.7": the version built against (lathe --version, the object cache's
 * key: objects of one version are never loaded by another). */
#define CG_LLVM_VERSION LLVM_VERSION_STRING

#endif
