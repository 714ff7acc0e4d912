#!/bin/sh
# ops_select.sh -- the selecting tensor ops of issue 17 from the language down (clamp,
# min, ...): lowering, both backends on one small input, and the frontend's
# errors. Kernel accuracy against PyTorch is tests/test_interp.c's (fixtures),
# the LLVM kernels against the interpreter tests/test_llvm.c's, gradients
# tests/test_grad.c's.
. "$(dirname "$0")/lib/common.sh"

# x = f32[2, 3] = [[-2, -0.5, 0], [0.25, 1, 3]] as .npy
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''
  printf '\000\000\000\300\000\000\000\277\000\000\000\000\000\000\200\076\000\000\200\077\000\000\100\100'; } >"$tmp/x.npy"

# expect NAME MODEL_BODY WANT: every backend prints WANT (the outputs, one line)
expect() {
  printf 'model t\ninput x : f32[2, 3]\n%s\n' "$2" >"$tmp/$1.nn"
  for b in llvm interp; do
    got=$("$LATHE" run "$tmp/$1.nn" --in x="$tmp/x.npy" --backend $b 2>&1 | tr '\n' ' ' | tr -s ' ')
    if [ "$got" = "$3" ]; then ok; else bad "$1 ($b): got '$got', want '$3'"; fi
  done
}

# refuse NAME MODEL_BODY MESSAGE: lathe check fails with status 1 and MESSAGE
refuse() {
  printf 'model t\ninput x : f32[2, 3]\ninput k : i32[2, 3]\n%s\n' "$2" >"$tmp/$1.nn"
  out=$("$LATHE" check "$tmp/$1.nn" 2>&1); rc=$?
  case "$out" in *"$3"*) [ $rc -eq 1 ] && ok || bad "$1: status $rc" ;; *) bad "$1: got '$out'" ;; esac
}

expect clamp 'output y = clamp(x, min=-0.5, max=0.5)' "y: f32[2, 3] -0.5 -0.5 0 0.25 0.5 0.5 "
expect clamp_max 'output y = clamp(x, max=0.25)' "y: f32[2, 3] -2 -0.5 0 0.25 0.25 0.25 "
expect clamp_min 'output y = clamp(x, -0.5)' "y: f32[2, 3] -0.5 -0.5 0 0.25 1 3 "
expect clamp_crossed 'output y = clamp(x, min=1, max=0)' "y: f32[2, 3] 0 0 0 0 0 0 "
refuse clamp_none 'output y = clamp(x)' "4:12: error: 'clamp' needs 'min' or 'max' (or both)"
refuse clamp_int 'output y = clamp(k, min=0)' "error: 'clamp' expects a floating-point tensor, got i32[2, 3]"
refuse clamp_arg 'output y = clamp(x, lo=0)' "error: 'clamp' has no argument named 'lo'"

# min: the twin of max (NaN wins, first minimum takes the gradient)
expect min_all 'output y = min(x)' "y: f32[] -2 "
expect min_ax1 'output y = min(x, 1)' "y: f32[2] -2 0.25 "
expect min_keep 'output y = min(x, axis=0, keepdims=true)' "y: f32[1, 3] -2 -0.5 0 "
refuse min_axis 'output y = min(x, 2)' "4:19: error: axis 2 is out of range for a tensor of rank 2"

# comparisons: bool results (the printed form shows them as integers, as
# lathe_get_output returns them), numbers take the tensor's dtype
expect less 'output y = less(x, 0)' "y: i32[2, 3] 1 1 0 0 0 0 "
expect ge 'output y = greater_equal(x, 0.25)' "y: i32[2, 3] 0 0 0 1 1 1 "
expect eq_bcast 'output y = equal(slice(x, 0, 0, 1), x)' "y: i32[2, 3] 1 1 1 0 0 0 "
expect ne 'output y = not_equal(0, x)' "y: i32[2, 3] 1 1 0 1 1 1 "
expect le_mask 'output y = x * less_equal(x, 1)' "y: f32[2, 3] -2 -0.5 0 0.25 1 0 "
printf 'model t\ninput x : f32[2, 3]\noutput y = greater(x, x)\n' >"$tmp/cmpty.nn"
case $("$LATHE" check "$tmp/cmpty.nn" 2>&1) in *"greater        bool[2, 3]"*) ok ;; *) bad "greater: not bool" ;; esac
refuse cmp_nums 'output y = less(1, 2)' "error: 'less' needs at least one tensor, got two numbers"
refuse cmp_shape 'output y = equal(x, slice(k, 1, 0, 2))' "shape error in output 'y': equal: shapes do not broadcast: [2, 3] and [2, 2]"

# where: a bool condition, a and b promoted as a + b, broadcast together
expect where 'output y = where(less(x, 0), 0, x)' "y: f32[2, 3] 0 0 0 0.25 1 3 "
expect where_bcast 'output y = where(greater(slice(x, 1, 2, 3), 1), x, neg(x))' "y: f32[2, 3] 2 0.5 -0 0.25 1 3 "
expect where_nums 'output y = where(less(x, 0), 1, 0)' "y: i64[2, 3] 1 1 0 0 0 0 "
refuse where_cond 'output y = where(x, x, 0)' "4:18: error: 'where' needs a bool condition (a comparison such as less(x, 0)), got f32[2, 3]"
refuse where_shape 'output y = where(less(x, 0), x, slice(x, 1, 0, 2))' "where: shapes do not broadcast: [2, 3], [2, 3] and [2, 2]"

# argmax / argmin: i32 indices, the first extremum on ties
expect argmax0 'output y = argmax(x, 0)' "y: i32[3] 1 1 1 "
expect argmin1 'output y = argmin(x, -1, keepdims=true)' "y: i32[2, 1] 0 0 "
expect argmax_ties 'output y = argmax(where(less(x, 1), 1, 0), 1)' "y: i32[2] 0 0 "
expect argmin_ties 'output y = argmin(where(less(x, 0), 0, x), 1)' "y: i32[2] 0 0 "
refuse argmax_axis 'output y = argmax(x)' "4:12: error: 'argmax' needs argument 'axis' (an integer)"
refuse argmin_bool 'output y = argmin(less(x, 0), 0)' "argmin: input must be numeric, got bool[2, 3]"

finish
