# common.sh -- sourced by the script tests (tests/*.sh) after their header
# comment: $1 is the lathe binary (as LATHE), ok/bad count the checks, $tmp
# is a scratch folder removed at exit, and finish prints ctest's closing line
# ("N passed, N failed") and sets the script's exit status.
set -u
LATHE=${1:?usage: $(basename "$0") LATHE}
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }

# npy_zeros FILE: x = f32[4, 64] of zeros as .npy (version 1.0, header padded
# to 128 bytes), an input for examples/mlp.nn.
npy_zeros() {
  local hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (4, 64), }"
  { printf '\x93NUMPY\x01\x00\x76\x00%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 1024 /dev/zero; } >"$1"
}

# npy_close A.npy B.npy WHAT: a check that the two arrays agree within 1e-5
# (the distributed tests' one process against ranks and stages)
npy_close() {
  local r
  if r=$(/usr/bin/python3 -c "import numpy as np, sys; d = float(np.abs(np.load('$1') - np.load('$2')).max()); print(d); sys.exit(d > 1e-5)" 2>&1)
  then ok; echo "$3: max |diff| $r"; else bad "$3: $r"; fi
}

# small_task DIR: DIR/d.csv, 200 rows of 4 features and a class 0/1 target,
# and DIR/m.nn, a small classifier that trains on it in a moment.
small_task() {
  awk 'BEGIN { srand(3); for (i = 0; i < 200; i++) { a = rand(); b = rand();
               printf "%f,%f,%f,%f,%d\n", a, b, a * b, a - b, (a > b ? 1 : 0) } }' >"$1/d.csv"
  cat >"$1/m.nn" <<'NN'
model small
input  x : f32[batch, 4]
target y : i32[batch]
h = dense(x, 16, name="fc1") |> relu
logits = dense(h, 2, name="out")
output probs = softmax(logits)
loss = cross_entropy(logits, y)
train {
  optimizer = adam(lr=1e-2)
  epochs = 2
  batch = 32
}
NN
}
