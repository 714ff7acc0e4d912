#!/usr/bin/env bash
# preprocess.sh -- the data preprocessing travels with the model: a digits
# model trained with default settings and run by `lathe run` on the raw CSV
# features predicts what `lathe eval --split all` scores on the same rows;
# eval uses the checkpoint's normalisation (also none and minmax), and a
# --normalize that disagrees with the checkpoint is refused by run and eval.
# $1 is the lathe binary. Needs python3 (standard library only) to turn the
# CSV into .npy arrays and score the outputs.
. "$(dirname "$0")/lib/common.sh"
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
if [ ! -f "$DIGITS" ] || ! command -v python3 >/dev/null; then
  echo "SKIPPED (loudly): needs $DIGITS (apt-get install python3-sklearn) and python3" >&2
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
metric() { grep -E "^$1: " "$2" | head -1 | awk '{print $NF}'; }

# npy SHAPE OUT: the raw features of every row as f32 .npy of that shape
# ("N,64" or "N,1,8,8", N filled in); the labels go to OUT.labels.
npy() {
  python3 - "$DIGITS" "$1" "$2" <<'EOF'
import gzip, struct, sys
rows = [[float(v) for v in l.split(",")] for l in gzip.open(sys.argv[1], "rt") if l.strip()]
shape = tuple(len(rows) if d == "N" else int(d) for d in sys.argv[2].split(","))
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (shape,)
hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
with open(sys.argv[3], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    for r in rows: f.write(struct.pack("<%df" % (len(r) - 1), *r[:-1]))
open(sys.argv[3] + ".labels", "w").write("\n".join(str(int(r[-1])) for r in rows))
EOF
}
# score PROBS.npy LABELS: "accuracy loss" of class probabilities [N, C] against the labels.
score() {
  python3 - "$1" "$2" <<'EOF'
import math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<H", b[8:10])[0]
hdr = b[10:10 + n].decode()
shape = eval(hdr[hdr.index("(") : hdr.index(")") + 1])
p = struct.unpack("<%df" % (shape[0] * shape[1]), b[10 + n:])
y = [int(v) for v in open(sys.argv[2]).read().split()]
C = shape[1]
right = loss = 0
for i, t in enumerate(y):
    row = p[i * C:(i + 1) * C]
    right += max(range(C), key=lambda c: row[c]) == t
    loss -= math.log(max(row[t], 1e-38))
print("%.4f %.4f" % (right / len(y), loss / len(y)))
EOF
}
# same_as_eval NAME MODEL WEIGHTS X.npy [EVAL FLAGS]: run on raw X == eval --split all.
same_as_eval() {
  local name=$1 model=$2 w=$3 x=$4
  shift 4
  "$LATHE" run "$model" --weights "$w" --in x="$x" --out probs="$tmp/$name.npy" 2>"$tmp/$name.run" \
    && ok || bad "$name: run: $(cat "$tmp/$name.run")"
  "$LATHE" eval "$model" --weights "$w" --data "$DIGITS" --split all "$@" >"$tmp/$name.eval" 2>&1 \
    && ok || bad "$name: eval: $(cat "$tmp/$name.eval")"
  read -r racc rloss <<<"$(score "$tmp/$name.npy" "$x.labels" 2>/dev/null)"
  local eacc eloss
  eacc=$(metric accuracy "$tmp/$name.eval") eloss=$(metric loss "$tmp/$name.eval")
  echo "$name: run accuracy ${racc:-none} loss ${rloss:-none}; eval --split all accuracy $eacc loss $eloss"
  [ -n "$eacc" ] && [ "${racc:-x}" = "$eacc" ] && ok || bad "$name: run accuracy ${racc:-none} != eval's $eacc"
  awk -v a="${rloss:-99}" -v b="${eloss:-0}" 'BEGIN { d = a - b; exit !(d < 2e-4 && d > -2e-4) }' \
    && ok || bad "$name: run loss ${rloss:-none} != eval's $eloss"
}

npy N,64 "$tmp/x.npy"
npy N,1,8,8 "$tmp/x4.npy"

# 1. The acceptance case: default settings, raw features through lathe run.
"$LATHE" train examples/mlp.nn --data "$DIGITS" --out "$tmp/mlp" --quiet >"$tmp/mlp.out" 2>&1 \
  && ok || bad "train mlp: $(tail -3 "$tmp/mlp.out")"
same_as_eval mlp examples/mlp.nn "$tmp/mlp/best.safetensors" "$tmp/x.npy"
same_as_eval mlp_last examples/mlp.nn "$tmp/mlp/last.safetensors" "$tmp/x.npy"

# 2. A --normalize that agrees is accepted; one that disagrees is refused by run and eval.
"$LATHE" run examples/mlp.nn --weights "$tmp/mlp/best.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/std.npy" \
  --normalize standard >/dev/null 2>&1 && cmp -s "$tmp/std.npy" "$tmp/mlp.npy" && ok || bad "run --normalize standard"
"$LATHE" run examples/mlp.nn --weights "$tmp/mlp/best.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/mm.npy" \
  --normalize minmax >/dev/null 2>"$tmp/mm.err"
[ $? -eq 1 ] && grep -q "error: --normalize minmax: the weights '.*best.safetensors' were trained with standard normalisation of input 'x'" \
  "$tmp/mm.err" && [ ! -e "$tmp/mm.npy" ] && ok || bad "run --normalize minmax not refused: $(cat "$tmp/mm.err")"
"$LATHE" eval examples/mlp.nn --weights "$tmp/mlp/best.safetensors" --data "$DIGITS" --normalize none >"$tmp/none.out" 2>&1
[ $? -eq 1 ] && grep -q "error: --normalize none: the weights '.*best.safetensors' were trained with standard normalisation of input 'x' and carry its statistics" \
  "$tmp/none.out" && ok || bad "eval --normalize none not refused: $(cat "$tmp/none.out")"
"$LATHE" eval examples/mlp.nn --weights "$tmp/mlp/best.safetensors" --data "$DIGITS" --split all --normalize standard \
  >"$tmp/std.out" 2>&1 && cmp -s "$tmp/std.out" "$tmp/mlp.eval" && ok || bad "eval --normalize standard differs"

# 3. Trained without normalisation: eval must not refit standard statistics; minmax travels too.
for k in none minmax; do
  "$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 3 --normalize $k --out "$tmp/$k" --quiet >"$tmp/$k.out" 2>&1 \
    && ok || bad "train --normalize $k: $(tail -3 "$tmp/$k.out")"
  "$LATHE" eval examples/mlp.nn --weights "$tmp/$k/best.safetensors" --data "$DIGITS" >"$tmp/$k.test" 2>&1
  [ "$(metric accuracy "$tmp/$k.test")" = "$(metric "test accuracy" "$tmp/$k.out")" ] && ok \
    || bad "--normalize $k: eval test accuracy $(metric accuracy "$tmp/$k.test") != training's $(metric "test accuracy" "$tmp/$k.out")"
  same_as_eval "mlp_$k" examples/mlp.nn "$tmp/$k/best.safetensors" "$tmp/x.npy"
done
"$LATHE" run examples/mlp.nn --weights "$tmp/none/best.safetensors" --in x="$tmp/x.npy" --normalize standard \
  >/dev/null 2>"$tmp/ns.err"
[ $? -eq 1 ] && grep -q "were trained with none normalisation of input 'x'" "$tmp/ns.err" && ok \
  || bad "run --normalize standard on a none model: $(cat "$tmp/ns.err")"

# --resume with another --normalize is refused, naming the checkpoint's.
"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 4 --normalize standard --out "$tmp/none" --resume --quiet \
  >/dev/null 2>"$tmp/rs.err"
[ $? -eq 1 ] && grep -q "none/best.safetensors' was trained with none normalisation of input 'x', but this run asks for standard (--normalize): resume with --normalize none" \
  "$tmp/rs.err" && ok || bad "resume with another --normalize: $(cat "$tmp/rs.err")"

# 4. 64 columns feeding f32[batch, 1, 8, 8], and the best of several restarts.
"$LATHE" train examples/cnn.nn --data "$DIGITS" --epochs 2 --out "$tmp/cnn" --quiet >"$tmp/cnn.out" 2>&1 \
  && ok || bad "train cnn: $(tail -3 "$tmp/cnn.out")"
same_as_eval cnn examples/cnn.nn "$tmp/cnn/best.safetensors" "$tmp/x4.npy"
"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 2 --restarts 2 --out "$tmp/r" --quiet >"$tmp/r.out" 2>&1 \
  && ok || bad "train --restarts 2: $(tail -3 "$tmp/r.out")"
same_as_eval restarts examples/mlp.nn "$tmp/r/best.safetensors" "$tmp/x.npy"

# 5. Weights without preprocessing (lathe init) still run and evaluate; run cannot invent statistics.
"$LATHE" init examples/mlp.nn -o "$tmp/init.safetensors" >/dev/null 2>&1 && ok || bad "init"
"$LATHE" eval examples/mlp.nn --weights "$tmp/init.safetensors" --data "$DIGITS" --normalize minmax >/dev/null 2>&1 \
  && ok || bad "eval of weights without preprocessing"
"$LATHE" run examples/mlp.nn --weights "$tmp/init.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/i.npy" \
  >/dev/null 2>&1 && ok || bad "run of weights without preprocessing"
"$LATHE" run examples/mlp.nn --weights "$tmp/init.safetensors" --in x="$tmp/x.npy" --normalize standard >/dev/null \
  2>"$tmp/ni.err"
[ $? -eq 1 ] && grep -q "error: --normalize standard: the weights '.*init.safetensors' carry no normalisation statistics" \
  "$tmp/ni.err" && ok || bad "run --normalize without statistics: $(cat "$tmp/ni.err")"

finish
