#!/bin/bash
# gemm_cli.sh -- --gemm blas|generated on run (and its refusals on run, train
# and eval; LATHE_GEMM's too): the digits MLP at batch 256, whose products
# are past the small-product size, gives the same probabilities with either
# product within 1e-5. tests/test_gemm.c checks the products themselves.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3

expect_refusal() { # WANT-IN-STDERR CMD...: exit status 1 and the message
  local want=$1
  shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then bad "$* succeeded"; return; fi
  if grep -q -- "$want" "$tmp/err"; then ok; else bad "$*: no '$want' in: $(cat "$tmp/err")"; fi
}

expect_refusal "--gemm cublas: expected blas or generated" "$LATHE" run examples/mlp.nn --gemm cublas
expect_refusal "--gemm x: expected blas or generated" "$LATHE" train examples/mlp.nn --data none.csv --gemm x
expect_refusal "--gemm x: expected blas or generated" "$LATHE" eval examples/mlp.nn --weights w --data none.csv --gemm x

if ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIPPED (loudly): the comparison needs $PY with numpy (apt-get install python3-numpy)" >&2
  finish
  exit
fi
"$LATHE" init examples/mlp.nn -o "$tmp/w.safetensors" --seed 3 || bad "lathe init"
"$PY" -c 'import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(1).standard_normal((256, 64)).astype(np.float32))' "$tmp/x.npy"
for g in blas generated; do
  "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" --gemm $g \
    --out probs="$tmp/$g.npy" && ok || bad "lathe run --gemm $g"
done
"$PY" - "$tmp" <<'PY' && ok || bad "probabilities differ between --gemm blas and generated"
import numpy as np, sys
a, b = np.load(sys.argv[1] + "/blas.npy"), np.load(sys.argv[1] + "/generated.npy")
err = float(np.abs(a - b).max() / np.abs(a).max())
print("--gemm generated vs blas: max error / max |p| = %.2e" % err)
sys.exit(0 if a.shape == (256, 10) and err <= 1e-5 else 1)
PY
LATHE_GEMM=cublas "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "LATHE_GEMM=cublas: expected blas or generated" "$tmp/err" && ok || bad "LATHE_GEMM=cublas: $(cat "$tmp/err")"
# the flag is what the process uses: it overrides a LATHE_GEMM the run would refuse
LATHE_GEMM=cublas "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" --gemm generated \
  --out probs="$tmp/g2.npy" 2>"$tmp/err" && cmp -s "$tmp/g2.npy" "$tmp/generated.npy" && ok ||
  bad "--gemm generated under LATHE_GEMM=cublas: $(cat "$tmp/err")"
finish
