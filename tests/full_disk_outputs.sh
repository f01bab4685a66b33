#!/usr/bin/env bash
# A full disk for the writers full_disk.sh does not cover (issue 21): index
# (1 and 2 ranks), explain -o and inspect --dump, each on a small tmpfs with
# no byte free ("full") and with a little room ("room": the write fails half
# way). Each must exit nonzero with the OS's reason and the path, must not
# crash, and must leave nothing that looks complete (no output, no .tmp).
# index on a disk that holds its part files but not the assembled index must
# keep the parts (the work done), say so, and the same command after space
# is freed must assemble them into an index byte-identical to one built on a
# roomy disk (before issue 21 it exited 0 with an incomplete index and removed
# the parts). Exit 77 where mounting a tmpfs is refused.
# Env: CORPUSLENS, PYTHON (python3-torch for the inspect case).
. "$(dirname "$0")/lib.sh"
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
d=$(mktemp -d /tmp/full_disk_outputs.XXXXXX)
mnt=$d/mnt
mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=1m tmpfs "$mnt" 2>"$d/mount.err"; then
    echo "skip: cannot mount a tmpfs here ($(cat "$d/mount.err")): run as root with CAP_SYS_ADMIN"
    exit 77
fi
umount "$mnt"
cd "$d"

set -e
"$E" demo-corpus --chars 60000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 --holdout-fraction 0.1 -o c.h5 >/dev/null
"$E" index --model m.h5 --corpus c.h5 -o ref.h5 2>/dev/null
"$E" index --model m.h5 --corpus c.h5 --sketch-dim 0 -o ref0.h5 2>/dev/null
"$E" index --model m.h5 --corpus c.h5 --batch 512 -o ref512.h5 2>/dev/null
set +e
have_torch=0
if "$PY" - "$SRC/tests/python" <<'PY' 2>/dev/null; then have_torch=1; fi
import sys, torch
sys.path.insert(0, sys.argv[1])
import torch_models as tm
text = open("demo.txt", encoding="utf-8").read()
m = tm.make_lecture(3, vocab_size=len(tm.vocab_of(text)), n_embd=64, n_head=4, n_layer=2, block_size=16)
torch.save(m.state_dict(), "lecture.pt")
PY

# fill KIB: a 1 MiB tmpfs with KIB KiB left (0: not a byte)
fill() {
    umount "$mnt" 2>/dev/null
    mount -t tmpfs -o size=1m tmpfs "$mnt"
    if [ "$1" = 0 ]; then
        dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
        dd if=/dev/zero of="$mnt/filler2" bs=1 2>/dev/null
    else
        dd if=/dev/zero of="$mnt/filler" bs=4k count=$(((1024 - $1) / 4)) 2>/dev/null
    fi
}
left() { (cd "$mnt" && find . -mindepth 1 ! -name 'filler*' ! -type d | sed 's|^\./||' | sort | tr '\n' ' '); }

# failed NAME: the last command (status $rc, stderr err.txt) failed cleanly
failed() {
    if [ "$rc" -eq 0 ]; then
        bad "$1: exit status 0"
    elif [ "$rc" -gt 128 ] || grep -q "Segmentation fault\|signal" err.txt; then
        bad "$1: crashed (exit $rc)"; sed 's/^/      /' err.txt | tail -5
    elif ! grep -q "No space left on device" err.txt || ! grep -qF "$mnt" err.txt; then
        bad "$1: the message lacks the OS reason or the path:"; sed 's/^/      /' err.txt | tail -5
    else
        ok "$1: exit $rc: $(grep -m1 "No space" err.txt)"
    fi
}

# writer NAME KIB -- COMMAND...: fails cleanly and leaves nothing (KEEP: a
# pattern of files that may stay, the work done so far)
writer() {
    local name=$1 kib=$2
    shift 3
    fill "$kib"
    "$@" >out.txt 2>err.txt
    rc=$?
    failed "$name ($kib KiB free)"
    local l
    l=$(left | tr ' ' '\n' | grep -v "^${KEEP:-^\$}\$" | tr '\n' ' ')
    [ -z "${l// /}" ] || bad "$name ($kib KiB free): left $l"
}

writer "explain -o" 0 -- "$E" explain --index ref.h5 --corpus c.h5 --model m.h5 --thresholds 0.5,0.5 --weights 1,1 \
    --eval-text 200 --quiet -o "$mnt/e.h5"
writer "explain -o" 24 -- "$E" explain --index ref.h5 --corpus c.h5 --model m.h5 --thresholds 0.5,0.5 --weights 1,1 \
    --eval-text 200 --quiet -o "$mnt/e.h5"
writer "explain -o" 100 -- "$E" explain --index ref.h5 --corpus c.h5 --model m.h5 --thresholds 0.5,0.5 --weights 1,1 \
    --eval-text 200 --quiet -o "$mnt/e.h5"
if [ $have_torch = 1 ]; then
    writer "inspect --dump" 0 -- "$E" inspect lecture.pt --dump blocks.0.ffwd.net.0.weight -o "$mnt/t.h5"
    writer "inspect --dump" 24 -- "$E" inspect lecture.pt --dump blocks.0.ffwd.net.0.weight -o "$mnt/t.h5"
else
    echo "note: no torch for $PY: inspect --dump not tried"
fi
writer "index" 0 -- "$E" index --model m.h5 --corpus c.h5 -o "$mnt/i.h5"
KEEP='i\.h5\.parts/\(args\|rank0\.bin\)' writer "index" 100 -- "$E" index --model m.h5 --corpus c.h5 -o "$mnt/i.h5"

# room for the parts (256 KiB) but not for the index beside them: the parts stay
# and the same command, once there is room, assembles them
assemble_case() {
    local name=$1 kib=$2 ref=$3
    shift 3
    fill "$kib"
    "$@" -o "$mnt/i.h5" >out.txt 2>err.txt
    rc=$?
    failed "$name ($kib KiB free)"
    [ -e "$mnt/i.h5" ] && bad "$name ($kib KiB free): left $mnt/i.h5"
    [ -e "$mnt/i.h5.tmp" ] && bad "$name ($kib KiB free): left $mnt/i.h5.tmp"
    if [ -s "$mnt/i.h5.parts/rank0.bin" ] && grep -q "parts stay in" err.txt; then
        ok "  ... the parts stay, as the message says"
    else
        bad "$name ($kib KiB free): the parts are gone or the message does not say they stay: $(left)"
        return
    fi
    rm -f "$mnt"/filler*
    mount -o remount,size=8m "$mnt" # the close reserves the file plus 1 MiB (cl_h5_finish)
    "$@" -o "$mnt/i.h5" >out.txt 2>err.txt
    rc=$?
    if [ $rc -ne 0 ]; then
        bad "$name: the same command with room failed (exit $rc):"; sed 's/^/      /' err.txt | tail -3
    elif ! cmp -s "$mnt/i.h5" "$ref"; then
        bad "$name: the index assembled from the kept parts differs from $ref"
    elif [ -e "$mnt/i.h5.parts" ]; then
        bad "$name: the parts stay after a successful index: $(left)"
    else
        ok "  ... the same command with room assembles an index identical to $ref"
    fi
}
for kib in 300 360 400 480; do
    assemble_case "index" $kib ref.h5 "$E" index --model m.h5 --corpus c.h5
    assemble_case "index --sketch-dim 0" $kib ref0.h5 "$E" index --model m.h5 --corpus c.h5 --sketch-dim 0
done
assemble_case "index, 2 ranks" 400 ref512.h5 timeout 120 mpiexec -n 2 --oversubscribe "$E" index --model m.h5 \
    --corpus c.h5 --batch 512

umount "$mnt"
cl_finish
