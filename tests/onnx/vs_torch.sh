# vs_torch.sh -- what onnx_models.sh and onnx_gpt2.sh share (sourced after
# tests/lib/common.sh, which gives LATHE, tmp, ok, bad).
PY=/usr/bin/python3

# onnx_need NAME: exit 0 with a loud skip line when torch or this build's
# ONNX support is missing.
onnx_need() {
  if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "SKIPPED (loudly): $1 needs $PY with torch and numpy (apt-get install python3-torch)"; exit 0
  fi
  if "$LATHE" import 2>&1 | grep -q "without ONNX"; then
    echo "SKIPPED (loudly): this lathe was built without ONNX support (./setup.sh, then configure again)"; exit 0
  fi
}

# vs_torch DIR M: DIR/M.nn with DIR/M.safetensors on $tmp/M.in.npy (input x;
# a model's other inputs NAME from $tmp/M.NAME.npy), on the interpreter and
# the LLVM backend, against PyTorch's $tmp/M.out.npy: max |diff| <= 1e-5 of
# max |PyTorch|.
vs_torch() {
  local dir="$1" m="$2" be f k extra=()
  for f in "$tmp/$m".*.npy; do
    k=${f#"$tmp/$m."}; k=${k%.npy}
    case $k in in|out|interp|llvm) ;; *) extra+=(--in "$k=$f") ;; esac
  done
  for be in interp llvm; do
    if ! "$LATHE" run "$dir/$m.nn" --weights "$dir/$m.safetensors" --in x="$tmp/$m.in.npy" "${extra[@]}" \
        --out y="$tmp/$m.$be.npy" --backend $be >/dev/null 2>"$tmp/run.log"; then
      bad "run $m $be: $(cat "$tmp/run.log")"; continue
    fi
    "$PY" - "$tmp/$m.$be.npy" "$tmp/$m.out.npy" "$m $be" <<'PY' && ok || bad "$m $be differs from PyTorch"
import sys, numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(got - want).max() / np.abs(want).max()) if got.shape == want.shape else float("inf")
print(f"{sys.argv[3]}: max |diff| / max |PyTorch| = {err:.2e}")
sys.exit(0 if err <= 1e-5 else 1)
PY
  done
}
