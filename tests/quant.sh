#!/bin/bash
# quant.sh -- quantized models through the CLI (docs/quantize.md):
#   1. the digits MLP (examples/mlp.nn) trained, then quantized in every mode:
#      int8 (static, calibrated on the training split, minmax and
#      percentile), int8-dynamic, w8 and bf16 test accuracy within 0.3
#      points of f32 (bf16 on both its kernels: the bf16 dot products and,
#      with -avx512bf16, the f32 one), w4 and f16 within 1 point; int8-dynamic's metrics are
#      the same with every integer kernel turned off (LATHE_CPU_FEATURES=
#      none: the scalar one), int8's on the AVX2 kernel; with none, int8
#      computes in f32 on its int8 weights (within 0.3 points) and
#      lathe quantize says so; on AMX's tiles through the emulator
#      (LATHE_AMX_EMULATE=1) int8's and int8-dynamic's metrics the same,
#      bf16 within 0.3 points, and lathe quantize names amx-int8;
#      --print-after=quantize shows qmatmul nodes; lathe run's probabilities
#      from the w8 file are close to f32's; the files are smaller.
#      The digits CNN (examples/cnn.nn) in int8 and int8-dynamic: its convs
#      kept f32 with the note (too small for int8 to win at batch 1);
#      within 0.5 points of f32; int8's metrics the same on the AVX2 kernel.
#   2. the char-GPT (examples/gpt.nn), one short epoch on fortunes: w8
#      validation loss within 1% of f32, w4 within 4%; generate runs with
#      both (the decode step's products quantized too).
#   3. bad requests: unknown mode, int8 without calibration data, nothing to
#      quantize, weights already quantized, a quantized file into lathe emit.
. "$(dirname "$0")/lib/common.sh"
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
FORTUNES=/usr/share/games/fortunes
metric() { sed -n "s/^$1: //p" "$2" | tail -1; }
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

# 1. digits MLP
if [ -r "$DIGITS" ]; then
  "$LATHE" train examples/mlp.nn --data "$DIGITS" --out "$tmp/mlp" --quiet >"$tmp/t.out" 2>&1 \
    && ok || bad "train mlp: $(tail -3 "$tmp/t.out")"
  W="$tmp/mlp/best.safetensors"
  "$LATHE" eval examples/mlp.nn --weights "$W" --data "$DIGITS" >"$tmp/f32.out" 2>&1 || bad "eval f32"
  a32=$(metric accuracy "$tmp/f32.out")
  for mode in int8 int8p int8-dynamic w8 w4 bf16 f16; do
    flags="--mode $mode"
    case $mode in
      int8) flags="--mode int8 --data $DIGITS --calib-batches 8" ;;
      int8p) flags="--mode int8 --data $DIGITS --calib percentile" ;;
    esac
    "$LATHE" quantize examples/mlp.nn --weights "$W" $flags -o "$tmp/$mode.safetensors" >"$tmp/q.out" 2>&1 \
      && ok || bad "quantize $mode: $(cat "$tmp/q.out")"
    grep -q "quantized 3 weight matrices to ${mode%p}, 0 left f32" "$tmp/q.out" && ok || bad "quantize $mode: $(cat "$tmp/q.out")"
    grep -q "^note: this CPU has no SIMD" "$tmp/q.out" && bad "$mode: f32-form note on a CPU with SIMD dot products"
    [ "$(stat -c %s "$tmp/$mode.safetensors")" -lt "$(stat -c %s "$W")" ] && ok || bad "$mode file not smaller"
    "$LATHE" eval examples/mlp.nn --weights "$tmp/$mode.safetensors" --data "$DIGITS" >"$tmp/$mode.out" 2>&1 \
      || bad "eval $mode: $(tail -3 "$tmp/$mode.out")"
    a=$(metric accuracy "$tmp/$mode.out")
    tol=0.01; case $mode in int8*|w8|bf16) tol=0.003 ;; esac
    echo "digits MLP test accuracy: f32 $a32, $mode ${a:-none}"
    within "${a:-0}" "$a32" $tol && ok || bad "$mode accuracy ${a:-none} vs f32 $a32 (tolerance $tol)"
  done
  LATHE_CPU_FEATURES=-avx512bf16 "$LATHE" eval examples/mlp.nn --weights "$tmp/bf16.safetensors" --data "$DIGITS" \
    >"$tmp/bf16f.out" 2>&1 || bad "eval bf16 on the f32 kernel"
  a=$(metric accuracy "$tmp/bf16f.out")
  echo "digits MLP test accuracy: f32 $a32, bf16 on the f32 kernel ${a:-none}"
  within "${a:-0}" "$a32" 0.003 && ok || bad "bf16 (f32 kernel) accuracy ${a:-none} vs f32 $a32"
  # the scalar kernel itself (the compiler would keep these layers f32 there: LATHE_QUANT_KEEP_F32=0 reaches it)
  LATHE_QUANT_KEEP_F32=0 LATHE_CPU_FEATURES=none "$LATHE" eval examples/mlp.nn --weights "$tmp/int8-dynamic.safetensors" --data "$DIGITS" \
    >"$tmp/scalar.out" 2>&1 || bad "eval scalar"
  cmp -s "$tmp/scalar.out" "$tmp/int8-dynamic.out" && ok || bad "int8-dynamic metrics differ with the scalar kernel"
  LATHE_CPU_FEATURES=-avx512vnni,-avxvnni "$LATHE" eval examples/mlp.nn --weights "$tmp/int8.safetensors" \
    --data "$DIGITS" >"$tmp/avx2.out" 2>&1 || bad "eval int8 avx2"
  cmp -s "$tmp/avx2.out" "$tmp/int8.out" && ok || bad "int8 metrics differ with the avx2 kernel"
  # AMX's tile kernels through the tile emulator (rt/rt_amx.c; LATHE_AMX_EMULATE=1 on any host): int8 and
  # int8-dynamic the same metrics bit for bit, bf16 within its tolerance; quantize names the kernel
  for mode in int8 int8-dynamic bf16; do
    LATHE_AMX_EMULATE=1 "$LATHE" eval examples/mlp.nn --weights "$tmp/$mode.safetensors" --data "$DIGITS" \
      >"$tmp/amx.out" 2>&1 || bad "eval $mode on amx: $(tail -3 "$tmp/amx.out")"
    if [ $mode = bf16 ]; then
      a=$(metric accuracy "$tmp/amx.out")
      within "${a:-0}" "$a32" 0.003 && ok || bad "bf16 on amx accuracy ${a:-none} vs f32 $a32"
    else cmp -s "$tmp/amx.out" "$tmp/$mode.out" && ok || bad "$mode metrics differ on the amx-int8 kernel"; fi
  done
  LATHE_AMX_EMULATE=1 "$LATHE" quantize examples/mlp.nn --weights "$W" --mode int8-dynamic -o "$tmp/amx.safetensors" \
    >"$tmp/qa.out" 2>&1 || bad "quantize on amx"
  grep -q "^kernel on this CPU: amx-int8 (amx: emulated" "$tmp/qa.out" && ok || bad "quantize amx line: $(cat "$tmp/qa.out")"
  LATHE_CPU_FEATURES=none "$LATHE" eval examples/mlp.nn --weights "$tmp/int8.safetensors" --data "$DIGITS" \
    >"$tmp/scalar8.out" 2>&1 || bad "eval int8 scalar"
  a=$(metric accuracy "$tmp/scalar8.out")
  echo "digits MLP test accuracy: f32 $a32, int8 in its f32 form (no SIMD integer dot products) ${a:-none}"
  within "${a:-0}" "$a32" 0.003 && ok || bad "int8 f32 form accuracy ${a:-none} vs f32 $a32"
  # without SIMD integer dot products int8 computes in f32 on the int8 weights, and quantize says so
  LATHE_CPU_FEATURES=none "$LATHE" quantize examples/mlp.nn --weights "$W" --mode int8 \
    --data "$DIGITS" -o "$tmp/b1.safetensors" >"$tmp/q1.out" 2>&1 || bad "quantize int8 without simd"
  grep -q "^note: this CPU has no SIMD integer dot products (neither VNNI nor AVX2): the int8 products compute in f32" \
    "$tmp/q1.out" && ok || bad "int8 f32-form note: $(cat "$tmp/q1.out")"
  # w8/w4 have no f32 form: below 16 rows they would be slower than f32 there, and quantize says so (only then)
  LATHE_CPU_FEATURES=none "$LATHE" quantize examples/mlp.nn --weights "$W" --mode w4 -o "$tmp/b4.safetensors" \
    >"$tmp/q4.out" 2>&1 || bad "quantize w4 without simd"
  grep -q "^note: this CPU has no SIMD integer dot products (neither VNNI nor AVX2): w8/w4 products below 16 rows" \
    "$tmp/q4.out" && ok || bad "w4 slow-rows note: $(cat "$tmp/q4.out")"
  npy_zeros "$tmp/x0.npy"
  "$LATHE" run examples/mlp.nn --weights "$tmp/w8.safetensors" --in x="$tmp/x0.npy" --print-after=quantize \
    >"$tmp/r8.out" 2>"$tmp/r8.err" || bad "run w8: $(tail -3 "$tmp/r8.err")"
  [ "$(grep -c '= qmatmul(' "$tmp/r8.err")" = 3 ] && ok || bad "--print-after=quantize: $(head -5 "$tmp/r8.err")"
  "$LATHE" run examples/mlp.nn --weights "$W" --in x="$tmp/x0.npy" >"$tmp/r32.out" 2>&1 || bad "run f32"
  paste <(tr ' ' '\n' <"$tmp/r8.out") <(tr ' ' '\n' <"$tmp/r32.out") | awk '
    $1 ~ /^[-0-9.e]+$/ && $2 ~ /^[-0-9.e]+$/ { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
    END { print "w8 vs f32 probabilities: max difference " m + 0; exit !(m < 0.02) }' && ok || bad "w8 run differs from f32"
  # int8 at batch 1: with the scalar kernel only, the f32 form of the products (k=4); close to f32
  hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 64), }"
  { printf '\x93NUMPY\x01\x00\x76\x00%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 256 /dev/zero; } \
    >"$tmp/x1.npy"
  for feat in none ""; do
    LATHE_CPU_FEATURES=$feat "$LATHE" run examples/mlp.nn --weights "$tmp/int8.safetensors" --in x="$tmp/x1.npy" \
      --print-after=quantize >"$tmp/r1.out" 2>"$tmp/r1.err" || bad "run int8 batch 1: $(tail -3 "$tmp/r1.err")"
    n=$(grep -c '= qmatmul(.* k=4 n=' "$tmp/r1.err")
    [ "$n" = "$([ -n "$feat" ] && echo 3 || echo 0)" ] && ok || bad "int8 batch 1 (${feat:-all}): $n f32-form products"
    "$LATHE" run examples/mlp.nn --weights "$W" --in x="$tmp/x1.npy" >"$tmp/r132.out" 2>&1 || bad "run f32 batch 1"
    paste <(tr ' ' '\n' <"$tmp/r1.out") <(tr ' ' '\n' <"$tmp/r132.out") | awk '
      $1 ~ /^[-0-9.e]+$/ && $2 ~ /^[-0-9.e]+$/ { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
      END { print "int8 vs f32 probabilities at batch 1: max difference " m + 0; exit !(m < 0.02) }' && ok \
      || bad "int8 batch-1 run differs from f32"
  done
  # w4 at batch 1 without SIMD dot products: the compiler keeps every layer f32 (passes/quantize_cost.c), says so
  # in one line, marks the weights in the dump; the result is the dequantized model's, close to f32
  LATHE_CPU_FEATURES=none "$LATHE" run examples/mlp.nn --weights "$tmp/b4.safetensors" --in x="$tmp/x1.npy" \
    --print-after=quantize >"$tmp/k4.out" 2>"$tmp/k4.err" || bad "run w4 kept f32: $(tail -3 "$tmp/k4.err")"
  [ "$(grep -c 'kept f32, dequantized at load' "$tmp/k4.err")" = 3 ] && ! grep -q '= qmatmul(' "$tmp/k4.err" && ok \
    || bad "w4 kept f32 dump: $(cat "$tmp/k4.err")"
  grep -q "^note: w4 dense fc1.weight, fc2.weight, out.weight kept f32: host has no AVX2/VNNI dot products" \
    "$tmp/k4.err" && ok || bad "w4 kept f32 note: $(cat "$tmp/k4.err")"
  "$LATHE" run examples/mlp.nn --weights "$tmp/b4.safetensors" --in x="$tmp/x1.npy" 2>"$tmp/h4.err" | grep -q . \
    && ! grep -q "kept f32" "$tmp/h4.err" && ok || bad "w4 at batch 1 kept f32 on this CPU: $(cat "$tmp/h4.err")"
  paste <(tr ' ' '\n' <"$tmp/k4.out") <(tr ' ' '\n' <"$tmp/r132.out") | awk '
    $1 ~ /^[-0-9.e]+$/ && $2 ~ /^[-0-9.e]+$/ { d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
    END { print "w4 kept f32 vs f32 probabilities at batch 1: max difference " m + 0; exit !(m < 0.05) }' && ok \
    || bad "w4 kept-f32 run differs from f32"
  # bad requests
  "$LATHE" quantize examples/mlp.nn --weights "$W" --mode int3 -o "$tmp/b.safetensors" 2>"$tmp/e.err" && bad "int3 accepted"
  grep -q "unknown mode 'int3' (expected w8, w4, int8-dynamic, int8, bf16 or f16)" "$tmp/e.err" && ok || bad "int3: $(cat "$tmp/e.err")"
  "$LATHE" quantize examples/mlp.nn --weights "$W" --mode int8 2>"$tmp/e.err" && bad "int8 without data accepted"
  grep -q "error: no calibration data: --mode int8 calibrates" "$tmp/e.err" && ok || bad "int8: $(cat "$tmp/e.err")"
  "$LATHE" quantize examples/mlp.nn --weights "$W" --mode int8 --data "$DIGITS" --calib median 2>"$tmp/e.err" \
    && bad "--calib median accepted"
  grep -q "unknown --calib 'median' (expected minmax or percentile)" "$tmp/e.err" && ok || bad "calib: $(cat "$tmp/e.err")"
  "$LATHE" quantize examples/mlp.nn --weights "$tmp/w8.safetensors" --mode w4 -o "$tmp/b.safetensors" 2>"$tmp/e.err" \
    && bad "quantized twice"
  grep -q "holds w8-quantized weights already" "$tmp/e.err" && ok || bad "twice: $(cat "$tmp/e.err")"
  "$LATHE" emit examples/mlp.nn --weights "$tmp/w8.safetensors" --bind batch=1 -o "$tmp/aot" 2>"$tmp/e.err" \
    && bad "emit took quantized weights"
  grep -q "holds w8-quantized weights" "$tmp/e.err" && ok || bad "emit: $(cat "$tmp/e.err")"
  # w8/w4 files of the older layout (no layout version, or another) have the same shapes: refused, not misread
  for v in none 1; do
    /usr/bin/python3 - "$tmp/w4.safetensors" "$tmp/old$v.safetensors" "$v" <<'PY' || bad "rewrite w4 file"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["__metadata__"]["lathe.quant_layout"] == "2", h.get("__metadata__")
if sys.argv[3] == "none": del h["__metadata__"]
else: h["__metadata__"]["lathe.quant_layout"] = sys.argv[3]
j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])
PY
    want="holds w4-quantized weights in layout $v, not this Lathe's (2): re-run lathe quantize on the f32 weights"
    [ $v = none ] && want="holds w4-quantized weights in an older layout (no lathe.quant_layout in its metadata), \
not this Lathe's (2): re-run lathe quantize on the f32 weights"
    for cmd in run eval; do
      case $cmd in run) a="--in x=$tmp/x0.npy" ;; eval) a="--data $DIGITS" ;; esac
      "$LATHE" $cmd examples/mlp.nn --weights "$tmp/old$v.safetensors" $a >"$tmp/o.out" 2>"$tmp/e.err" \
        && bad "$cmd took an old-layout w4 file ($v)"
      grep -qF "$want" "$tmp/e.err" && ok || bad "$cmd old layout $v: $(cat "$tmp/e.err")"
    done
  done
  # the digits CNN in int8: its dense layers; conv1 (9 inputs per window) and conv2 (4x4 outputs) stay f32
  # (int8 would be slower at batch 1: tests/test_qconv.c has the int8 convs) and lathe quantize says so;
  # static int8 within 0.5 points of f32, the same metrics on AVX2
  "$LATHE" train examples/cnn.nn --data "$DIGITS" --out "$tmp/cnn" --quiet >"$tmp/t.out" 2>&1 \
    && ok || bad "train cnn: $(tail -3 "$tmp/t.out")"
  C="$tmp/cnn/best.safetensors"
  "$LATHE" eval examples/cnn.nn --weights "$C" --data "$DIGITS" >"$tmp/c32.out" 2>&1 || bad "eval cnn f32"
  c32=$(metric accuracy "$tmp/c32.out")
  for mode in int8 int8-dynamic; do
    flags="--mode $mode"; [ $mode = int8 ] && flags="--mode int8 --data $DIGITS"
    "$LATHE" quantize examples/cnn.nn --weights "$C" $flags -o "$tmp/c$mode.safetensors" >"$tmp/q.out" 2>&1 \
      && ok || bad "quantize cnn $mode: $(cat "$tmp/q.out")"
    grep -q "quantized 2 weight matrices to $mode, 2 left f32" "$tmp/q.out" && grep -q "^note: conv1.weight stays \
f32: its window has fewer than 32 inputs (C\*KH\*KW): int8 would be slower than f32 there" "$tmp/q.out" && ok \
      || bad "quantize cnn $mode: $(cat "$tmp/q.out")"
    "$LATHE" eval examples/cnn.nn --weights "$tmp/c$mode.safetensors" --data "$DIGITS" >"$tmp/c$mode.out" 2>&1 \
      || bad "eval cnn $mode: $(tail -3 "$tmp/c$mode.out")"
    a=$(metric accuracy "$tmp/c$mode.out")
    echo "digits CNN test accuracy: f32 $c32, $mode ${a:-none}"
    within "${a:-0}" "$c32" 0.005 && ok || bad "cnn $mode accuracy ${a:-none} vs f32 $c32 (tolerance 0.005)"
  done
  LATHE_CPU_FEATURES=-avx512vnni,-avxvnni "$LATHE" eval examples/cnn.nn --weights "$tmp/cint8.safetensors" \
    --data "$DIGITS" >"$tmp/cavx2.out" 2>&1 || bad "eval cnn int8 avx2"
  cmp -s "$tmp/cavx2.out" "$tmp/cint8.out" && ok || bad "cnn int8 metrics differ with the avx2 kernel"
  hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 8), }"
  { printf '\x93NUMPY\x01\x00\x76\x00%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 256 /dev/zero; } \
    >"$tmp/xc.npy"
  "$LATHE" run examples/cnn.nn --weights "$tmp/cint8.safetensors" --in x="$tmp/xc.npy" --print-after=quantize \
    >/dev/null 2>"$tmp/cd.err" || bad "run cnn int8: $(tail -3 "$tmp/cd.err")"
  [ "$(grep -c '= qmatmul(' "$tmp/cd.err")" = 2 ] && [ "$(grep -c '= conv2d(' "$tmp/cd.err")" = 2 ] && ok \
    || bad "cnn int8 graph: $(grep -E 'conv2d|qmatmul' "$tmp/cd.err" | head -5)"
else
  echo "SKIP: digits data $DIGITS not found: the MLP part did not run" >&2
fi
printf 'model r\ninput x : f32[batch, 4]\noutput y = relu(x)\n' >"$tmp/r.nn"
"$LATHE" init "$tmp/r.nn" -o "$tmp/r.safetensors" >/dev/null 2>&1 || bad "init r"
"$LATHE" quantize "$tmp/r.nn" --weights "$tmp/r.safetensors" --mode w8 -o "$tmp/b.safetensors" 2>"$tmp/e.err" \
  && bad "nothing to quantize accepted"
grep -q "model 'r' has nothing to quantize in mode w8: it has no dense weight matrix" "$tmp/e.err" && ok \
  || bad "nothing: $(cat "$tmp/e.err")"

# 2. char-GPT
if [ -d "$FORTUNES" ]; then
  cat "$FORTUNES/fortunes" "$FORTUNES/wisdom" "$FORTUNES/science" >"$tmp/corpus.txt"
  "$LATHE" train examples/gpt.nn --data "$tmp/corpus.txt" --out "$tmp/gpt" --epochs 1 --quiet >"$tmp/g.out" 2>&1 \
    && ok || bad "train gpt: $(tail -3 "$tmp/g.out")"
  G="$tmp/gpt/best.safetensors"
  "$LATHE" eval examples/gpt.nn --weights "$G" --data "$tmp/corpus.txt" --split val >"$tmp/g32.out" 2>&1 || bad "eval gpt"
  l32=$(metric loss "$tmp/g32.out")
  for mode in w8 w4; do
    "$LATHE" quantize examples/gpt.nn --weights "$G" --mode $mode -o "$tmp/g$mode.safetensors" >/dev/null 2>"$tmp/e.err" \
      && ok || bad "quantize gpt $mode: $(cat "$tmp/e.err")"
    "$LATHE" eval examples/gpt.nn --weights "$tmp/g$mode.safetensors" --data "$tmp/corpus.txt" --split val \
      >"$tmp/g$mode.out" 2>&1 || bad "eval gpt $mode"
    l=$(metric loss "$tmp/g$mode.out")
    rel=0.01; [ $mode = w4 ] && rel=0.04
    echo "char-GPT validation loss: f32 $l32, $mode ${l:-none}"
    awk -v a="${l:-99}" -v b="$l32" -v r=$rel 'BEGIN { exit !(a <= b * (1 + r)) }' && ok \
      || bad "gpt $mode loss ${l:-none} vs f32 $l32 (within $rel)"
    "$LATHE" generate examples/gpt.nn --weights "$tmp/g$mode.safetensors" --prompt "The " --tokens 50 --seed 1 \
      >"$tmp/gen.out" 2>"$tmp/gen.err" && ok || bad "generate $mode: $(cat "$tmp/gen.err")"
    [ "$(wc -c <"$tmp/gen.out")" -ge 50 ] && grep -q "key/value cache" "$tmp/gen.err" && ok \
      || bad "generate $mode: $(cat "$tmp/gen.err")"
    # without SIMD dot products the decode step's products are kept f32 (and said so): the same text, greedy
    LATHE_CPU_FEATURES=none "$LATHE" generate examples/gpt.nn --weights "$tmp/g$mode.safetensors" --prompt "The " \
      --tokens 50 --seed 1 --temperature 0 >"$tmp/genk.out" 2>"$tmp/genk.err" \
      && grep -q "^note: $mode dense .* kept f32: host has no AVX2/VNNI dot products" "$tmp/genk.err" && ok \
      || bad "generate $mode kept f32: $(cat "$tmp/genk.err")"
  done
else
  echo "SKIP: $FORTUNES not found (./setup.sh installs fortunes): the char-GPT part did not run" >&2
fi
finish
