#!/usr/bin/env bash
# rt_split.sh -- liblathe_rt stands alone: its archive refers to no LLVM,
# JSON or frontend symbol, and a C program linked with it (and OpenBLAS,
# libm, pthread) but not liblathe builds, runs, and needs no LLVM library.
. "$(dirname "$0")/lib/common.sh"
build=$(cd "$(dirname "$LATHE")" && pwd)
rt=$build/liblathe_rt.a

[ -f "$rt" ] && ok || bad "no $rt"
syms=$(nm "$rt" 2>/dev/null | grep -E ' [UTDBR] ' | awk '{print $NF}' | sort -u)
[ -n "$syms" ] && ok || bad "nm $rt listed nothing"
foreign=$(echo "$syms" | grep -E '^(LLVM|json_|fe_|ir_|pl_|cg_|lathe_(compile|load|run|model))' || true)
[ -z "$foreign" ] && ok || bad "liblathe_rt.a refers to: $(echo $foreign)"

san="" # a sanitizer build's archive needs its runtime in the program too (CI's ASan run)
nm "$rt" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"
if gcc -std=c11 -O2 $san -I rt tests/aot/rt_alone.c "$rt" -lopenblas -lpthread -lm -o "$tmp/alone" 2>"$tmp/cc.err"; then
  ok
  "$tmp/alone" >"$tmp/out" 2>&1 && grep -q "rt_alone: ok" "$tmp/out" && ok || bad "rt_alone: $(cat "$tmp/out")"
  deps=$(ldd "$tmp/alone")
  echo "$deps" | grep -qiE 'LLVM|liblathe|json' && bad "rt_alone loads: $deps" || ok
  undef=$(nm -u "$tmp/alone" | awk '{print $NF}')
  echo "$undef" | grep -qE '^(LLVM|json_)' && bad "rt_alone needs: $undef" || ok
else
  bad "rt_alone does not link with liblathe_rt alone: $(head -5 "$tmp/cc.err")"
fi
finish
