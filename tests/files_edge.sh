#!/usr/bin/env bash
# files_edge.sh -- what is already at an output path is respected: --out (run),
# -o (init), --plot and train's checkpoints written over a symbolic link go to
# the file it names (the link stays), over a FIFO or device (/dev/stdout,
# /dev/full) straight through (never replaced by a regular file); a write
# error (ENOSPC from /dev/full) on any output, log.jsonl or stdout ends in
# exit 1 naming the file; an unwritable --plot path fails before training.
# $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
islink() { [ -L "$1" ] && ok || bad "$1 is no longer a symbolic link"; }
isnpy() { [ "$(head -c 6 "$1" | tail -c 5)" = "NUMPY" ] && ok || bad "$1 is not a .npy file"; }
has() { grep -q -F -- "$2" "$1" && ok || bad "want '$2' in: $(cat "$1")"; }

npy_zeros "$tmp/x.npy"
small_task "$tmp"
"$LATHE" init examples/mlp.nn -o "$tmp/w.safetensors" >/dev/null 2>&1 || bad "init"
run() { "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" "$@"; }
train() { "$LATHE" train "$tmp/m.nn" --data "$tmp/d.csv" --quiet "$@"; }

# 1. run --out over a symbolic link: the file it names is written, the link stays.
: >"$tmp/real.npy"
ln -s real.npy "$tmp/link.npy"
run --out probs="$tmp/link.npy" >/dev/null 2>"$tmp/err" && ok || bad "run --out link: $(cat "$tmp/err")"
islink "$tmp/link.npy"
isnpy "$tmp/real.npy"
# ... and a dangling link creates the file it names.
ln -s new.npy "$tmp/dangling.npy"
run --out probs="$tmp/dangling.npy" >/dev/null 2>"$tmp/err" && ok || bad "run --out dangling: $(cat "$tmp/err")"
islink "$tmp/dangling.npy"
[ -f "$tmp/new.npy" ] && isnpy "$tmp/new.npy" || bad "the dangling link's target was not created"
# ... and init -o the same (the safetensors writer).
: >"$tmp/wreal.safetensors"
ln -s wreal.safetensors "$tmp/wlink.safetensors"
"$LATHE" init examples/mlp.nn -o "$tmp/wlink.safetensors" >/dev/null 2>&1 && ok || bad "init -o link"
islink "$tmp/wlink.safetensors"
[ -s "$tmp/wreal.safetensors" ] && ok || bad "init -o through a link wrote nothing"

# 2. A FIFO is written through to its reader and stays a FIFO.
mkfifo "$tmp/fifo"
timeout 10 cat "$tmp/fifo" >"$tmp/fromfifo.npy" &
reader=$!
timeout 10 bash -c 'LATHE=$1; shift; "$LATHE" "$@"' _ "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" \
  --in x="$tmp/x.npy" --out probs="$tmp/fifo" >/dev/null 2>"$tmp/err" && ok || bad "run --out fifo: $(cat "$tmp/err")"
[ -p "$tmp/fifo" ] && ok || bad "the FIFO was replaced by a regular file"
wait "$reader" 2>/dev/null
isnpy "$tmp/fromfifo.npy"
cmp -s "$tmp/fromfifo.npy" "$tmp/real.npy" && ok || bad "the FIFO's reader got other bytes than the file"

# 3. ENOSPC: a link to /dev/full is written through and fails, naming the file; exit 1.
ln -s /dev/full "$tmp/full.npy"
run --out probs="$tmp/full.npy" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "run --out link to /dev/full: exit $st, want 1"
has "$tmp/err" "cannot write '$tmp/full.npy': No space left on device"
islink "$tmp/full.npy"

# 4. The real /dev/full and /dev/stdout, only once the links above were left in place
# (an old binary, run as root, would rename a regular file over /dev/stdout).
if [ "$fail" -eq 0 ]; then
  run --out probs=/dev/full >/dev/null 2>"$tmp/err"
  st=$?
  [ "$st" -eq 1 ] && ok || bad "run --out /dev/full: exit $st, want 1"
  has "$tmp/err" "cannot write '/dev/full': No space left on device"
  [ -c /dev/full ] && ok || bad "/dev/full is no longer a device"
  run --out probs=/dev/stdout 2>"$tmp/err" | cat >"$tmp/stdout.npy"
  cmp -s "$tmp/stdout.npy" "$tmp/real.npy" && ok || bad "run --out /dev/stdout | cat: other bytes: $(cat "$tmp/err")"
  run --out probs=/dev/stdout >"$tmp/stdout2.npy" 2>"$tmp/err"
  cmp -s "$tmp/stdout2.npy" "$tmp/real.npy" && ok || bad "run --out /dev/stdout > file: other bytes: $(cat "$tmp/err")"
  "$LATHE" init examples/mlp.nn -o /dev/stdout 2>/dev/null | cmp -s - "$tmp/wreal.safetensors" && ok \
    || bad "init -o /dev/stdout"
else
  bad "the real /dev/full and /dev/stdout not tried: the links above were replaced"
fi

# 5. Checkpoints over links: the links stay, the files they name get the checkpoints.
mkdir "$tmp/o"
: >"$tmp/keep_last.safetensors"
ln -s ../keep_last.safetensors "$tmp/o/last.safetensors"
train --out "$tmp/o" >/dev/null 2>"$tmp/err" && ok || bad "train --out with a linked checkpoint: $(cat "$tmp/err")"
islink "$tmp/o/last.safetensors"
[ -s "$tmp/keep_last.safetensors" ] && ok || bad "the linked checkpoint was not written"
train --out "$tmp/o" --epochs 3 --resume >/dev/null 2>"$tmp/err" && ok || bad "resume through the link: $(cat "$tmp/err")"
# --plot over a link likewise.
: >"$tmp/plot_real.svg"
ln -s plot_real.svg "$tmp/plot.svg"
train --plot "$tmp/plot.svg" >/dev/null 2>"$tmp/err" && ok || bad "train --plot link: $(cat "$tmp/err")"
islink "$tmp/plot.svg"
grep -q "</svg>" "$tmp/plot_real.svg" && ok || bad "the linked plot was not written"

# 6. An unwritable --plot path fails before training: no checkpoint was written.
train --out "$tmp/o2" --plot "$tmp/nodir/p.svg" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "train --plot nodir/p.svg: exit $st, want 1"
has "$tmp/err" "cannot write '$tmp/nodir/p.svg': No such file or directory"
[ ! -e "$tmp/o2/last.safetensors" ] && ok || bad "--plot's path was checked only after training"
train --plot "$tmp" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "train --plot DIR: exit $st, want 1"
has "$tmp/err" "Is a directory"

# 7. ENOSPC on log.jsonl and on a checkpoint ends the run with exit 1, naming the file.
mkdir "$tmp/o3" "$tmp/o4"
ln -s /dev/full "$tmp/o3/log.jsonl"
train --out "$tmp/o3" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "log.jsonl on /dev/full: exit $st, want 1"
has "$tmp/err" "cannot write '$tmp/o3/log.jsonl': No space left on device"
islink "$tmp/o3/log.jsonl"
ln -s /dev/full "$tmp/o4/best.safetensors"
train --out "$tmp/o4" >/dev/null 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "best.safetensors on /dev/full: exit $st, want 1"
has "$tmp/err" "cannot write '$tmp/o4/best.safetensors': No space left on device"
islink "$tmp/o4/best.safetensors"

# 8. stdout that cannot be written: exit 1 with a message, for every kind of output.
for cmd in "check examples/mlp.nn" "dot examples/mlp.nn" "--help"; do
  # shellcheck disable=SC2086
  "$LATHE" $cmd >/dev/full 2>"$tmp/err"
  st=$?
  [ "$st" -eq 1 ] && ok || bad "lathe $cmd > /dev/full: exit $st, want 1"
  has "$tmp/err" "lathe: error: cannot write to stdout: No space left on device"
done
run >/dev/full 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "lathe run (printing) > /dev/full: exit $st, want 1"
train --json >/dev/full 2>"$tmp/err"
st=$?
[ "$st" -eq 1 ] && ok || bad "lathe train --json > /dev/full: exit $st, want 1"
has "$tmp/err" "cannot write to stdout"

finish
