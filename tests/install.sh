#!/usr/bin/env bash
# install.sh -- Lathe as another project sees it: `cmake --install` into a
# temporary prefix (the build's objects, nothing recompiled), then
# examples/host_jit.c built as an outside project against that prefix, once
# with find_package(Lathe) and once with pkg-config, with no path into the
# source or build tree; and examples/host_aot (its own CMake project) linking
# the model the installed `lathe emit` wrote, the same two ways (and with
# --gemm generated against liblathe_rt_noblas), its output the bytes of
# `lathe run`, its binary free of liblathe and LLVM (ldd, nm -u). Each build trains the digits-sized MLP a few steps
# and runs inference; its output file must be byte-for-byte what `lathe run`
# (the installed command) writes for the same weights and input, and the
# two builds must agree. The installed files are listed and checked too.
. "$(dirname "$0")/lib/common.sh"
build=$(cd "$(dirname "$LATHE")" && pwd)
src=$(pwd)
P=$tmp/prefix

# npy FILE DESCR SHAPE: a .npy (version 1.0, header padded to 128 bytes)
# holding the bytes on stdin.
npy() {
  local hdr="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  { printf '\x93NUMPY\x01\x00\x76\x00%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; cat; } >"$1"
}
# x: f32[4, 64] from a few exact values; y: i32[4] labels.
vals=('\x00\x00\x00\x3f' '\x00\x00\x80\xbf' '\x00\x00\x00\x40' '\x00\x00\x80\x3e' '\x00\x00\x00\x00')
for k in $(seq 0 255); do printf "${vals[$(((k * 7 + k / 64) % 5))]}"; done | npy "$tmp/x.npy" '<f4' '(4, 64)'
printf '\x03\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00' | npy "$tmp/y.npy" '<i4' '(4,)'

if cmake --install "$build" --prefix "$P" >"$tmp/install.log" 2>&1; then ok; else bad "install: $(tail -5 "$tmp/install.log")"; fi
for f in bin/lathe lib/liblathe.so lib/liblathe_rt.a lib/liblathe_rt_noblas.a include/lathe.h include/lathe_rt.h \
         lib/pkgconfig/lathe.pc lib/pkgconfig/lathe_rt.pc lib/pkgconfig/lathe_rt_noblas.pc \
         lib/cmake/Lathe/LatheConfig.cmake lib/cmake/Lathe/LatheConfigVersion.cmake; do
  [ -e "$P/$f" ] && ok || bad "not installed: $f"
done
# liblathe.so exports the public API only.
inner=$(nm -D --defined-only "$P/lib/liblathe.so" | awk '{print $3}' | grep -v '^lathe_' | head -3)
[ -z "$inner" ] && ok || bad "liblathe.so exports internals: $inner"

# A sanitized build (LATHE_SANITIZE) installs a liblathe.so that needs the
# sanitizer runtimes first in the process: the outside builds add the flags.
san=
ldd "$P/lib/liblathe.so" | grep -q libasan && san="-fsanitize=address,undefined"

# The outside project: a copy of the example, nothing else from the tree.
mkdir -p "$tmp/proj" && cp examples/host_jit.c "$tmp/proj/"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(host_jit C)
find_package(Lathe 0.1 REQUIRED)
add_executable(host_jit host_jit.c)
target_link_libraries(host_jit PRIVATE Lathe::lathe)
CM
if cmake -S "$tmp/proj" -B "$tmp/b1" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_FLAGS="$san" >"$tmp/cm.log" 2>&1 &&
   cmake --build "$tmp/b1" >>"$tmp/cm.log" 2>&1; then ok; else bad "find_package build: $(tail -8 "$tmp/cm.log")"; fi
export PKG_CONFIG_PATH=$P/lib/pkgconfig
if cc -std=c11 -O2 $san "$tmp/proj/host_jit.c" $(pkg-config --cflags --libs lathe) -Wl,-rpath,"$P/lib" \
     -o "$tmp/host_jit_pc" 2>"$tmp/cc.log"; then ok; else bad "pkg-config build: $(head -5 "$tmp/cc.log")"; fi
rt_flags=$(pkg-config --libs lathe_rt) && [[ "$rt_flags" == *liblathe_rt.a* ]] && ok || bad "lathe_rt.pc: $rt_flags"

# Run both; compare with the installed command on the same weights and input.
for exe in "$tmp/b1/host_jit" "$tmp/host_jit_pc"; do
  out=$tmp/out.$(basename "$exe") && mkdir -p "$out"
  if "$exe" examples/mlp.nn "$tmp/x.npy" "$tmp/y.npy" 3 "$out" >"$out/log" 2>&1; then ok
  else bad "$exe: $(tail -3 "$out/log")"; continue; fi
  grep -q '^step 3: loss ' "$out/log" && grep -q '^probs: f32\[4, 10\] ' "$out/log" && ok || bad "$exe printed: $(cat "$out/log")"
  "$P/bin/lathe" run examples/mlp.nn --weights "$out/trained.safetensors" --in x="$tmp/x.npy" \
    --out probs="$out/lathe_probs.npy" >/dev/null 2>"$out/run.err" || bad "lathe run: $(cat "$out/run.err")"
  cmp -s "$out/probs.npy" "$out/lathe_probs.npy" && ok || bad "$exe: probs.npy differs from lathe run's"
done
cmp -s "$tmp/out.host_jit/probs.npy" "$tmp/out.host_jit_pc/probs.npy" && ok || bad "the two builds disagree"
cmp -s "$tmp/out.host_jit/log" "$tmp/out.host_jit_pc/log" && ok || bad "the two builds print differently"
# Neither build reaches into the source or build tree.
for exe in "$tmp/b1/host_jit" "$tmp/host_jit_pc"; do
  ldd "$exe" | grep -q "$P/lib/liblathe.so" && ok || bad "$exe does not load the installed liblathe.so: $(ldd "$exe")"
  ! ldd "$exe" | grep -qF "$build" && ok || bad "$exe loads from the build tree"
done

# ---- examples/host_aot: the model emitted ahead of time, linked as an
# outside project against the prefix's liblathe_rt only, both ways (and with
# --gemm generated against liblathe_rt_noblas). Its probabilities must be the
# bytes `lathe run` writes for the same weights and input (one thread on both
# sides), and the binary must load no liblathe and no LLVM.
export LATHE_THREADS=1
Wt=$tmp/out.host_jit/trained.safetensors
"$P/bin/lathe" run examples/mlp.nn --weights "$Wt" --in x="$tmp/x.npy" --out probs="$tmp/aot_ref.npy" \
  >/dev/null 2>"$tmp/aot_ref.err" && ok || bad "lathe run: $(cat "$tmp/aot_ref.err")"
"$P/bin/lathe" run examples/mlp.nn --weights "$Wt" --in x="$tmp/x.npy" --out probs="$tmp/aot_refg.npy" --gemm generated \
  >/dev/null 2>"$tmp/aot_refg.err" && ok || bad "lathe run --gemm generated: $(cat "$tmp/aot_refg.err")"
npy_data() { local len; len=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' '); tail -c +$((10 + len + 1)) "$1"; }
npy_data "$tmp/aot_ref.npy" >"$tmp/aot_ref.raw"
npy_data "$tmp/aot_refg.npy" >"$tmp/aot_refg.raw"
"$P/bin/lathe" emit examples/mlp.nn --weights "$Wt" -o "$tmp/aot" --bind batch=4 2>"$tmp/aot.err" \
  && ok || bad "lathe emit: $(cat "$tmp/aot.err")"
"$P/bin/lathe" emit examples/mlp.nn --weights "$Wt" -o "$tmp/aotg" --bind batch=4 --gemm generated 2>"$tmp/aotg.err" \
  && ok || bad "lathe emit --gemm generated: $(cat "$tmp/aotg.err")"
mkdir -p "$tmp/aotproj" && cp examples/host_aot/CMakeLists.txt examples/host_aot/main.c "$tmp/aotproj/"
# aot_cmake BUILD MODEL_DIR [-DLATHE_NOBLAS=ON]: the example's own CMake project against the prefix
aot_cmake() {
  if cmake -S "$tmp/aotproj" -B "$1" -DCMAKE_PREFIX_PATH="$P" -DLATHE_MODEL_DIR="$2" ${3:-} -DCMAKE_C_FLAGS="$san" \
       >"$1.log" 2>&1 && cmake --build "$1" >>"$1.log" 2>&1; then ok; else bad "host_aot find_package: $(tail -8 "$1.log")"; fi
}
aot_cmake "$tmp/a1" "$tmp/aot"
aot_cmake "$tmp/a3" "$tmp/aotg" -DLATHE_NOBLAS=ON
if cc -std=c11 -O2 $san "$tmp/aotproj/main.c" -I "$tmp/aot" "$tmp/aot/libmlp.a" $(pkg-config --cflags --libs lathe_rt) \
     -o "$tmp/host_aot_pc" 2>"$tmp/aotcc.log"; then ok; else bad "host_aot pkg-config: $(head -5 "$tmp/aotcc.log")"; fi
# aot_check EXE REF.raw WANT_BLAS: output bytes, printout, what it loads and needs
aot_check() {
  "$1" "$tmp/x.npy" "$1.raw" >"$1.out" 2>&1 && ok || bad "$1: $(cat "$1.out")"
  grep -q '^row 3: class ' "$1.out" && ok || bad "$1 printed: $(cat "$1.out")"
  [ -s "$2" ] && cmp -s "$1.raw" "$2" && ok || bad "$1: probabilities differ from lathe run's"
  ldd "$1" >"$1.ldd" 2>&1
  grep -qiE 'liblathe|LLVM' "$1.ldd" && bad "$1 loads: $(cat "$1.ldd")" || ok
  local pat='^(LLVM|lathe_|json_)'
  [ "$3" = noblas ] && pat='^(LLVM|lathe_|json_|cblas|openblas|sgemm)'
  nm -u "$1" | awk '{print $NF}' | grep -E "$pat" >"$1.undef"
  [ ! -s "$1.undef" ] && ok || bad "$1 needs: $(cat "$1.undef")"
  if [ "$3" = noblas ]; then grep -qi blas "$1.ldd" && bad "$1 loads BLAS: $(cat "$1.ldd")" || ok; fi
}
aot_check "$tmp/a1/host_aot" "$tmp/aot_ref.raw" blas
aot_check "$tmp/host_aot_pc" "$tmp/aot_ref.raw" blas
aot_check "$tmp/a3/host_aot" "$tmp/aot_refg.raw" noblas
finish
