#!/usr/bin/env bash
# feedback.sh -- what `lathe train` tells the user: each epoch's closing
# progress line carries that epoch's own validation score (not the previous
# epoch's), the learning rate of every step is on the progress line and in
# log.jsonl, early stopping says when and why it stopped (and a resumed run
# that had already stopped says so again and still evaluates). $1 is the
# lathe binary.
. "$(dirname "$0")/lib/common.sh"

# A small two-class problem: 200 rows, 4 features, label = x1 + x2 > 0.
awk 'BEGIN { srand(3); for (i = 0; i < 200; i++) { a = rand() - 0.5; b = rand() - 0.5; c = rand(); d = rand();
             printf "%.4f,%.4f,%.4f,%.4f,%d\n", a, b, c, d, (a + b > 0) } }' >"$tmp/d.csv"
model() { # LR EPOCHS EXTRA-TRAIN-LINE
  cat <<EOF
model tiny
input  x : f32[batch, 4]
target y : i32[batch]
logits = dense(x, 2, name="out")
loss = cross_entropy(logits, y)
train {
  optimizer = sgd(lr=$1)
  schedule = step(every=1, gamma=0.5)
  epochs = $2
  batch = 16
  split = [0.6, 0.2, 0.2]
  seed = 1
  $3
}
EOF
}

# 1. The closing line of every epoch shows that epoch's validation loss (as
#    log.jsonl has it), and every line the step's learning rate: 0.05 halved
#    each epoch. 120 training rows / 16 = 7 steps an epoch.
model 0.05 3 "" >"$tmp/tiny.nn"
"$LATHE" train "$tmp/tiny.nn" --data "$tmp/d.csv" --out "$tmp/a" --metric loss >"$tmp/a.out" 2>"$tmp/a.err" \
  && ok || bad "train: $(cat "$tmp/a.err")"
lrs=(0.05 0.025 0.0125)
for e in 1 2 3; do
  v=$(grep '"split":"val"' "$tmp/a/log.jsonl" | grep "\"epoch\":$e," | sed 's/.*"loss":\([^,}]*\).*/\1/')
  want=$(awk -v v="$v" 'BEGIN { printf "%.4f", v }')
  line=$(grep "^epoch $e/3  step 7/7 " "$tmp/a.err")
  [ "$(grep -c "^epoch $e/3  step 7/7 " "$tmp/a.err")" = 1 ] && ok || bad "epoch $e: expected one closing line: $(cat "$tmp/a.err")"
  case "$line" in
    "epoch $e/3  step 7/7  loss "*"  lr ${lrs[e-1]}  val loss $want  "*" samples/s  ETA "*) ok ;;
    *) bad "epoch $e closing line lacks lr ${lrs[e-1]} and its own val loss $want: '$line'" ;;
  esac
done
grep -q "^epoch 1/3  step 1/7  loss [0-9.]*  lr 0.05  [0-9]* samples/s  ETA " "$tmp/a.err" && ok \
  || bad "first step line: $(head -1 "$tmp/a.err")"
# every step is logged with its learning rate
[ "$(grep -c '"split":"train"' "$tmp/a/log.jsonl")" = 21 ] && ok || bad "expected 21 train events"
for e in 1 2 3; do
  n=$(grep '"split":"train"' "$tmp/a/log.jsonl" | grep "\"epoch\":$e," | grep -c "\"lr\":${lrs[e-1]}}")
  [ "$n" = 7 ] && ok || bad "epoch $e: $n of 7 train events with \"lr\":${lrs[e-1]}: $(head -1 "$tmp/a/log.jsonl")"
done
grep -q 'early stopping' "$tmp/a.err" && bad "early stopping reported without early_stop" || ok

# 2. Early stopping: with a vanishing learning rate the validation accuracy
#    never improves after epoch 1, so early_stop = 2 stops after epoch 3.
model 1e-12 20 "early_stop = 2" >"$tmp/es.nn"
"$LATHE" train "$tmp/es.nn" --data "$tmp/d.csv" --out "$tmp/e" >"$tmp/e.out" 2>"$tmp/e.err" \
  && ok || bad "train es: $(cat "$tmp/e.err")"
best=$(grep '"split":"val"' "$tmp/e/log.jsonl" | head -1 | sed 's/.*"accuracy":\([^,}]*\).*/\1/')
best4=$(awk -v v="$best" 'BEGIN { printf "%.4f", v }')
msg="early stopping after epoch 3 of 20: validation accuracy has not improved for 2 epochs (early_stop = 2); best $best4 at epoch 1"
grep -qxF "$msg" "$tmp/e.err" && ok || bad "early-stop message missing; stderr: $(cat "$tmp/e.err")"
[ "$(grep -c '"split":"val"' "$tmp/e/log.jsonl")" = 3 ] && ok || bad "expected 3 validations"
grep -q "^{\"split\":\"early_stop\",\"epoch\":3,\"step\":21,\"time\":[0-9.]*,\"best_epoch\":1,\"patience\":2,\"best\":$best}\$" \
  "$tmp/e/log.jsonl" && ok || bad "no early_stop event in log.jsonl: $(tail -1 "$tmp/e/log.jsonl")"
grep -q "^trained 21 steps (3 epochs)" "$tmp/e.err" && ok || bad "summary: $(tail -1 "$tmp/e.err")"

# 3. Resuming a run that had stopped: it says so, logs nothing new, and
#    evaluates the best weights as the first run did.
"$LATHE" train "$tmp/es.nn" --data "$tmp/d.csv" --out "$tmp/e" --resume >"$tmp/r.out" 2>"$tmp/r.err" \
  && ok || bad "resume of a stopped run: $(cat "$tmp/r.err")"
grep -qxF "already stopped: $msg" "$tmp/r.err" && ok || bad "resume: no 'already stopped': $(cat "$tmp/r.err")"
[ "$(grep -c early_stop "$tmp/e/log.jsonl")" = 1 ] && ok || bad "resume logged early_stop again"
cmp -s "$tmp/e.out" "$tmp/r.out" && ok || bad "resumed metrics differ: $(cat "$tmp/r.out")"
# ... and a run that had finished all its epochs
"$LATHE" train "$tmp/tiny.nn" --data "$tmp/d.csv" --out "$tmp/a" --metric loss --resume >"$tmp/f.out" 2>"$tmp/f.err" \
  && ok || bad "resume of a finished run: $(cat "$tmp/f.err")"
cmp -s "$tmp/a.out" "$tmp/f.out" && ok || bad "finished resume metrics differ: $(cat "$tmp/f.out")"

finish
