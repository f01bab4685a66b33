#!/usr/bin/env bash
# Durability of every writer's output (issue 21): a file is fsynced before
# it is renamed into place, and the directory is fsynced after the rename, so
# that a crash or power loss never leaves a renamed output whose blocks are
# not on disk. Each writer runs under strace -f -y; for every rename of
# X.tmp (or X.train.tmp) onto X the trace must show an fsync of X.tmp before
# it and an fsync of X's directory after it. And `run` never reopens a
# finished output for writing (its job stamp goes beside it). Exit 77
# without strace.
# Env: CORPUSLENS, PYTHON (python3-torch for the inspect case).
. "$(dirname "$0")/lib.sh"
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
command -v strace >/dev/null || { echo "skip: no strace"; exit 77; }
d=$(mktemp -d /tmp/fsync_order.XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
if ! strace -f -o /dev/null true 2>/dev/null; then echo "skip: strace cannot trace here"; exit 77; fi

# traced NAME OUT -- COMMAND...: OUT (absolute) is written durably
traced() {
    local name=$1 out=$2
    shift 3
    rm -f trace
    if ! strace -f -y -qq -e trace=fsync,fdatasync,rename,renameat,renameat2 -o trace "$@" >out.txt 2>err.txt; then
        bad "$name: the command failed:"; sed 's/^/      /' err.txt | tail -3
        return
    fi
    local why
    if why=$("$PY" - "$out" trace <<'PY'
import os, re, sys
out, trace = sys.argv[1], sys.argv[2]
lines = open(trace, errors="replace").read().splitlines()
ren = re.compile(r'rename(?:at2?)?\((?:[^,]*, )?"([^"]+)", (?:[^,]*, )?"([^"]+)"(?:, \w+)?\) = 0')
fs = re.compile(r'f(?:data)?sync\(\d+<([^>]*)>\) = 0')
events = []
for l in lines:
    m = ren.search(l)
    if m:
        events.append(("rename", os.path.abspath(m.group(1)), os.path.abspath(m.group(2))))
        continue
    m = fs.search(l)
    if m:
        events.append(("fsync", m.group(1)))
hits = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == out]
if not hits:
    print("no rename onto " + out); sys.exit(1)
i = hits[-1]
tmp = events[i][1]
if not any(e[0] == "fsync" and e[1] == tmp for e in events[:i]):
    print("no fsync of %s before its rename" % tmp); sys.exit(1)
if not any(e[0] == "fsync" and e[1] == os.path.dirname(out) for e in events[i + 1:]):
    print("no fsync of the directory %s after the rename" % os.path.dirname(out)); sys.exit(1)
print("fsync %s, rename, fsync of the directory" % os.path.basename(tmp))
PY
    ); then ok "$name: $why"; else bad "$name: $why"; fi
}

set -e
"$E" demo-corpus --chars 60000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 --holdout-fraction 0.1 -o c.h5 >/dev/null
"$E" index --model m.h5 --corpus c.h5 -o i.h5 2>/dev/null
"$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o s.h5 2>/dev/null
set +e
mkdir -p out
o=$d/out
traced "demo-corpus" "$o/demo.txt" -- "$E" demo-corpus --chars 20000 -o "$o/demo.txt"
traced "init" "$o/m.h5" -- "$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt -o "$o/m.h5"
traced "prepare" "$o/c.h5" -- "$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 -o "$o/c.h5"
traced "index" "$o/i.h5" -- "$E" index --model m.h5 --corpus c.h5 -o "$o/i.h5"
traced "explain -o" "$o/e.h5" -- "$E" explain --index i.h5 --corpus c.h5 --model m.h5 --thresholds 0.5,0.5 \
    --weights 1,1 --quiet -o "$o/e.h5" "the cat"
traced "scan" "$o/s.h5" -- "$E" scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.01 --match-cap 0 -o "$o/s.h5"
traced "reduce" "$o/rep/report.h5" -- "$E" reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 -o "$o/rep"
traced "reduce (report.md)" "$o/rep/report.md" -- "$E" reduce s.h5 --thresholds 0.8,0.8 --weights 1,1 -o "$o/rep"
traced "tune" "$o/fit.ini" -- "$E" tune s.h5 --restarts 1 -o "$o/fit.ini"
traced "capture" "$o/a.h5" -- "$E" capture --model m.h5 --hook mlp_out -o "$o/a.h5" "hello world"
traced "lens --svg" "$o/lens.svg" -- "$E" lens --model m.h5 --svg "$o/lens.svg" "hello"
traced "train" "$o/t.h5" -- "$E" train --corpus demo.txt --config n_layer=1,n_embd=16,n_head=2,block_size=8 \
    --steps 2 --batch 2 --ctx 8 --eval-every 0 -o "$o/t.h5"
if "$PY" - "$SRC/tests/python" <<'PY' 2>/dev/null; then
import sys, torch
sys.path.insert(0, sys.argv[1])
import torch_models as tm
text = open("demo.txt", encoding="utf-8").read()
m = tm.make_lecture(3, vocab_size=len(tm.vocab_of(text)), n_embd=64, n_head=4, n_layer=2, block_size=16)
torch.save(m.state_dict(), "lecture.pt")
PY
    traced "inspect --dump" "$o/t.h5" -- "$E" inspect lecture.pt --dump blocks.0.ffwd.net.0.weight -o "$o/t.h5"
else
    echo "note: no torch for $PY: inspect --dump not tried"
fi
# run: a finished output is never opened for writing again (the job stamp
# goes beside it, "<output>.stamp"): a kill or a full disk there would damage
# a complete file. Every open of a stage output (not its .tmp) is read-only.
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
dir = $d/job
JOB
if ! strace -f -qq -e trace=open,openat -o trace "$E" run job.ini >out.txt 2>err.txt; then
    bad "run: failed:"; sed 's/^/      /' err.txt | tail -3
else
    rw=$(grep -E '"[^"]*/job/(corpus|scan|model)\.h5"|"[^"]*/job/report/report\.h5"' trace | grep -E 'O_RDWR|O_WRONLY' | head -3)
    stamps=$(ls "$d"/job/*.stamp "$d"/job/report/*.stamp 2>/dev/null | wc -l)
    if [ -n "$rw" ]; then
        bad "run: a finished output was opened for writing: $rw"
    elif [ "$stamps" -lt 3 ]; then
        bad "run: $stamps stamp files beside the outputs, expected corpus, scan and report"
    else
        ok "run: every stage output opened read-only after its rename; $stamps stamps beside them"
    fi
fi
cl_finish
