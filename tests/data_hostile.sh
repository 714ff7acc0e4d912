#!/usr/bin/env bash
# data_hostile.sh -- hostile data files through `lathe train` / `lathe eval`:
# each ends in a clear error naming file, line (or example), column and value,
# exit status 1, never a silent wrong answer (a label 2.9 trained as class 2,
# an int64 label 2^32 wrapped to 0, a dropped first row). $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
MLP=examples/mlp.nn
FAST=(--epochs 1 --backend interp --quiet)

# refused NAME WANT ARGS...: exit status 1 and WANT (a fixed string) on stderr.
refused() {
  local name=$1 want=$2
  shift 2
  "$LATHE" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq 1 ] && grep -qxF -- "$want" "$tmp/err"; then ok
  else bad "$name: exit $rc, stderr: $(head -3 "$tmp/err")"; fi
}

# 200 rows of 64 pixels and a label (i % 10); edits by row (0-based) and column.
python3 - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
rows = [[(i * 7 + j) % 17 for j in range(64)] + [i % 10] for i in range(200)]
def w(name, rows, pre="", nl="\n"):
    open(f"{d}/{name}", "w", newline="").write(pre + nl.join(",".join(str(v) for v in r) for r in rows) + nl)
def edit(r, c, v):
    e = [list(x) for x in rows]; e[r][c] = v; return e
w("frac.csv", edit(16, 64, 2.9))          # line 17
w("range.csv", edit(16, 64, 10))
w("regr.csv", [x[:64] + [x[64] + 0.5] for x in rows])
w("nanfirst.csv", edit(0, 3, "nan"))
w("ovf.csv", edit(5, 2, "1e39"))
w("bom.csv", rows[:10], pre="\ufeff")
w("crlf.csv", rows[:10], nl="\r\n")
def npy(name, descr, shape, data=b""):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join(f"{s}, " for s in shape))
    total = (10 + len(h) + 1 + 63) // 64 * 64
    h = h + " " * (total - 10 - len(h) - 1) + "\n"
    open(f"{d}/{name}", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
npy("x.npy", "<f4", (6, 64), struct.pack("<384f", *[0.5] * 384))
npy("y64.npy", "<i8", (6,), struct.pack("<6q", 0, 4294967296, 1, 2, 3, 4))
npy("wide.npy", "<f4", (0, 1 << 40, 1 << 40))
npy("ids.npy", "<i8", (6, 4), struct.pack("<24q", *([1] * 9 + [4294967297] + [2] * 14)))
npy("yid.npy", "<i4", (6,), struct.pack("<6i", 0, 1, 2, 0, 1, 2))
def idx(name, t, dims, payload):
    open(f"{d}/{name}", "wb").write(bytes([0, 0, t, len(dims)]) + b"".join(struct.pack(">I", x) for x in dims) + payload)
idx("img.idx", 0x08, (10, 64), bytes(640))
idx("lab.idx", 0x0D, (10,), struct.pack(">10f", 0, 1, 2, 2.5, 4, 5, 6, 7, 8, 9))
PY
cat >"$tmp/ids.nn" <<'NN'
model ids
input  ids : i32[batch, 4]
target y   : i32[batch]
h = embedding(ids, 10, 8, name="e") |> flatten
logits = dense(h, 3, name="out")
output p = softmax(logits)
loss = cross_entropy(logits, y)
train {
  epochs = 1
  batch = 2
  split = [0.5, 0.5, 0]
}
NN

# Class labels: not integers, outside [0, C), a regression file; in eval too.
refused "label 2.9" "$tmp/frac.csv:17: error: label 2.9 in column 65 is not an integer class" \
  train $MLP --data "$tmp/frac.csv" "${FAST[@]}"
refused "label 10" "$tmp/range.csv:17: error: label 10 in column 65 is outside [0, 10)" \
  train $MLP --data "$tmp/range.csv" "${FAST[@]}"
refused "regression CSV" "$tmp/regr.csv:1: error: label 0.5 in column 65 is not an integer class" \
  train $MLP --data "$tmp/regr.csv" "${FAST[@]}"
refused "eval label 2.9" "$tmp/frac.csv:17: error: label 2.9 in column 65 is not an integer class" \
  eval $MLP --weights "$tmp/none.safetensors" --data "$tmp/frac.csv"
# Cells: a NaN first row is data (not a header to drop), an f32 overflow.
refused "NaN first row" "$tmp/nanfirst.csv:1: error: column 4: 'nan' is a missing value (fill it or drop the row)" \
  train $MLP --data "$tmp/nanfirst.csv" "${FAST[@]}"
refused "f32 overflow" "$tmp/ovf.csv:6: error: column 3: '1e39' overflows f32 (largest 3.4e38)" \
  train $MLP --data "$tmp/ovf.csv" "${FAST[@]}"
# A BOM or CRLF file keeps all 10 rows: 6 train rows at batch 1 are 6 steps.
for f in bom crlf; do
  "$LATHE" train $MLP --data "$tmp/$f.csv" --batch 1 --json "${FAST[@]}" >"$tmp/out" 2>"$tmp/err"
  if grep -q '"steps": 6,' "$tmp/out"; then ok; else bad "$f: $(grep steps "$tmp/out") $(head -2 "$tmp/err")"; fi
done
# .npy: int64 labels and ids outside int32 are refused, never wrapped; a
# shape whose example width overflows.
refused "int64 label" "lathe: error: $tmp/y64.npy: example 1: label 4294967296 is outside [0, 10)" \
  train $MLP --data "x=$tmp/x.npy" --data "y=$tmp/y64.npy" --batch 2 "${FAST[@]}"
refused "int64 id" "lathe: error: $tmp/ids.npy: example 2, element 1: 'ids' value 4294967297 does not fit in int32" \
  train "$tmp/ids.nn" --data "ids=$tmp/ids.npy" --data "y=$tmp/yid.npy" "${FAST[@]}"
refused "wide npy" "lathe: error: $tmp/wide.npy: 'x' has too many elements per example" \
  train $MLP --data "x=$tmp/wide.npy" --data "y=$tmp/y64.npy" "${FAST[@]}"
# IDX: f32 labels that are not integers.
refused "IDX label 2.5" "lathe: error: $tmp/lab.idx: example 3: label 2.5 is not an integer class" \
  train $MLP --data "$tmp/img.idx,$tmp/lab.idx" --batch 2 "${FAST[@]}"

finish
