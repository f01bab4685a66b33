#!/usr/bin/env bash
# A full disk: every writer (demo-corpus, prepare, init, import, scan on 1 and 2
# ranks, reduce, tune, train, capture, lens/ablate --svg, run) writing onto a
# full file system (a small tmpfs, filled) must exit nonzero with the OS's
# reason and the path ("No space left on device", the mount's path), must
# not crash (no signal), and must leave nothing that looks complete: no
# output, no .tmp; a scan state may stay only when the message says so.
# Then the same writers on a tmpfs with a little room (the write fails half
# way, not at the first byte). Exit 77 (skipped) where mounting a tmpfs is
# refused (not root, or in a container without CAP_SYS_ADMIN).
# Env: CORPUSLENS, PYTHON (python3-torch for the import case), SRC.
. "$(dirname "$0")/lib.sh"
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
d=$(mktemp -d /tmp/full_disk.XXXXXX)
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
"$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
"$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o s.h5 2>/dev/null
"$PY" - "$SRC/tests/python" <<'PY'
import sys, torch
sys.path.insert(0, sys.argv[1])
import torch_models as tm
text = open("demo.txt", encoding="utf-8").read()
m = tm.make_lecture(3, vocab_size=len(tm.vocab_of(text)), n_embd=64, n_head=4, n_layer=2, block_size=16)
torch.save(m.state_dict(), "lecture.pt")
PY
set +e
cat > job.ini <<JOB
[corpus]
path = $d/demo.txt
len = 6
prompts = 64
seed = 1
[model]
path = $d/m.h5
[scan]
prefilter = 0.5
bin_width = 0.01
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = $mnt/job
JOB

# fill MODE: "full" leaves no byte free, "room" leaves about 24 KiB
fill() {
    umount "$mnt" 2>/dev/null
    mount -t tmpfs -o size=256k tmpfs "$mnt"
    if [ "$1" = full ]; then
        dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
    else
        dd if=/dev/zero of="$mnt/filler" bs=4k count=58 2>/dev/null
    fi
}

# writer NAME -- COMMAND...: on a full disk.
writer() {
    local name=$1
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    local left
    left=$(cd "$mnt" && find . -mindepth 1 ! -name filler ! -type d | sed 's|^\./||' | sort | tr '\n' ' ')
    if [ $rc -eq 0 ]; then
        bad "$name ($MODE): exit status 0"
    elif [ $rc -gt 128 ] || grep -q "Segmentation fault\|signal" err.txt; then
        bad "$name ($MODE): crashed (exit $rc)"; sed 's/^/      /' err.txt | head -5
    elif ! grep -q "No space left on device" err.txt || ! grep -qF "$mnt" err.txt; then
        bad "$name ($MODE): the message lacks the OS reason or the path:"; sed 's/^/      /' err.txt | head -5
    else
        ok "$name ($MODE): exit $rc: $(grep -m1 "No space" err.txt)"
    fi
    if [ -n "$left" ]; then
        # a scan state may stay when the message says so
        if [ "${left%%.state/*}" != "$left" ] && grep -q "is kept" err.txt && ! echo "$left" | grep -qv '\.state/'; then
            ok "  ... the scan state stays, as the message says: $left"
        else
            bad "$name ($MODE): left $left"
        fi
    fi
    (cd "$mnt" && find . -mindepth 1 ! -name filler -delete)
}

for MODE in full room; do
    fill $MODE
    if [ $MODE = room ]; then  # only the writers whose output is larger than the room left
        writer "prepare" -- "$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 -o "$mnt/c.h5"
        writer "init" -- "$E" init --config n_layer=2,n_embd=64,n_head=4,block_size=16 --vocab-from demo.txt -o "$mnt/i.h5"
        writer "import" -- "$E" import lecture.pt --corpus demo.txt -o "$mnt/imp.h5"
        writer "scan, 1 rank" -- "$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o "$mnt/s.h5"
        writer "scan, 2 ranks" -- timeout 120 mpiexec -n 2 --oversubscribe "$E" scan --model m.h5 --corpus c.h5 \
            --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o "$mnt/s.h5"
        writer "reduce" -- "$E" reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 -o "$mnt/rep"
        writer "train, 2 ranks" -- timeout 120 mpiexec -n 2 --oversubscribe "$E" train --corpus demo.txt \
            --config n_layer=2,n_embd=64,n_head=4,block_size=16 --steps 2 --batch 4 --ctx 8 --eval-every 0 -o "$mnt/t.h5"
        writer "run" -- "$E" run job.ini
        continue
    fi
    writer "demo-corpus" -- "$E" demo-corpus --chars 60000 -o "$mnt/demo.txt"
    writer "prepare" -- "$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 -o "$mnt/c.h5"
    writer "init" -- "$E" init --config n_layer=2,n_embd=64,n_head=4,block_size=16 --vocab-from demo.txt -o "$mnt/i.h5"
    writer "import" -- "$E" import lecture.pt --corpus demo.txt -o "$mnt/imp.h5"
    writer "scan, 1 rank" -- "$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o "$mnt/s.h5"
    writer "scan, 2 ranks" -- timeout 120 mpiexec -n 2 --oversubscribe "$E" scan --model m.h5 --corpus c.h5 \
        --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o "$mnt/s.h5"
    writer "reduce" -- "$E" reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 -o "$mnt/rep"
    writer "tune" -- "$E" tune s.h5 --restarts 1 -o "$mnt/fit.ini"
    writer "train, 2 ranks" -- timeout 120 mpiexec -n 2 --oversubscribe "$E" train --corpus demo.txt \
        --config n_layer=2,n_embd=64,n_head=4,block_size=16 --steps 2 --batch 4 --ctx 8 --eval-every 0 -o "$mnt/t.h5"
    writer "capture" -- "$E" capture --model m.h5 --hook mlp_out -o "$mnt/a.h5" "hello world"
    writer "lens --svg" -- "$E" lens --model m.h5 --svg "$mnt/lens.svg" "hello"
    writer "ablate --svg" -- "$E" ablate --model m.h5 --corpus c.h5 --svg "$mnt/bars.svg"
    writer "run" -- "$E" run job.ini
done
umount "$mnt"
cl_finish
