#!/usr/bin/env bash
# Resume on another rank count (issue 26 item 2). A scan (with --index-out)
# and an index are killed on R ranks (CORPUSLENS_FAULT=RANK:STEP@N:kill:
# SIGKILL at that rank's N-th shard, a checkpoint after every shard) and the
# same command on R' != R ranks resumes: the finished shards are kept, the
# rest re-planned over the R' ranks. 2 -> 3, 3 -> 1, and 2 -> 3 killed again
# -> 1 (the second resume reads checkpoints that two rank counts wrote). The
# files must equal an uninterrupted run's: the index byte for byte (cmp; it
# holds no time), scan.h5 byte for byte once its one wall-time attribute
# (wall_seconds) is set to 0 in copies of both (h5py rewrites the scalar in
# place), compared with an uninterrupted run on the rank count that finished
# it (one rank runs without MPI and writes through HDF5's default driver,
# which places the chunks otherwise: scan_ranks_bytes.sh). Before the fix the rank count was part of the resume signature: a
# rerun on other ranks started over (no "resuming" line).
# Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir resume_ranks
on() { # on R COMMAND...: the command on R ranks (1: no mpiexec)
    local r=$1
    shift
    if [ "$r" = 1 ]; then timeout -k 5 120 "$E" "$@"; else timeout -k 5 120 mpiexec -n "$r" --oversubscribe "$E" "$@"; fi
}
zero_wall() { # copy $1 to $2 with wall_seconds = 0
    "$PY" -c "
import shutil, sys, h5py
shutil.copyfile(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], 'r+') as f: f.attrs.modify('wall_seconds', 0.0)" "$1" "$2"
}
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 40 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
set +e
# 1526 substrings in shards of 64: 24 shards
SCAN=(scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.02 --batch 64 --checkpoint-every 0.000001)
IDX=(index --model m.h5 --corpus c.h5 --batch 64 --checkpoint-every 0.000001)
for r in 1 3; do
    on $r "${SCAN[@]}" -o ref$r.h5 --index-out refi.h5 >/dev/null 2>&1 || bad "scan: the uninterrupted run on $r ranks failed"
    zero_wall ref$r.h5 ref${r}_0.h5 || bad "scan: no reference on $r ranks"
done
on 1 "${IDX[@]}" -o iref.h5 >/dev/null 2>&1 || bad "index: the uninterrupted run failed"

killed() { # killed WHAT OUT R FAULT COMMAND...: the run dies, its state stays
    local what=$1 out=$2 r=$3 fault=$4
    shift 4
    CORPUSLENS_FAULT=$fault on "$r" "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -ne 0 ] && [ ! -f "$out" ]; then ok "$what: killed on $r ranks ($fault): exit $rc, no $out"
    else bad "$what: killed run on $r ranks: exit $rc, $out $( [ -f "$out" ] && echo exists || echo absent)"; fi
}
resumed() { # resumed WHAT R COMMAND...: the run resumes (a "resuming" line) and succeeds
    local what=$1 r=$2
    shift 2
    on "$r" "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -ne 0 ]; then bad "$what: the rerun on $r ranks failed (exit $rc):"; tail -3 err.txt | sed 's/^/      /'; return 1; fi
    if grep -q "resuming: [1-9][0-9]* of" err.txt; then ok "$what: the rerun on $r ranks: $(grep -o 'resuming: [^(]*' err.txt | head -1)"
    else bad "$what: the rerun on $r ranks did not resume: $(grep -m1 -i 'start\|resum' err.txt)"; return 1; fi
}
same_scan() { # same_scan WHAT R: s.h5 and si.h5 equal the uninterrupted run's on R ranks
    if [ -f s.h5 ] && zero_wall s.h5 s0.h5 && cmp -s ref${2}_0.h5 s0.h5; then ok "$1: scan.h5 == the uninterrupted one (wall_seconds set to 0 in both)"
    else bad "$1: scan.h5 differs from the uninterrupted one"; fi
    if cmp -s refi.h5 si.h5; then ok "$1: its --index-out == the uninterrupted one, byte for byte"
    else bad "$1: its --index-out differs"; fi
    [ ! -e s.h5.state ] && [ ! -e si.h5.parts ] || bad "$1: state left behind: $(ls -d s.h5.state si.h5.parts 2>/dev/null)"
    rm -rf s.h5 s0.h5 si.h5 s.h5.state si.h5.parts
}
same_index() {
    if [ -f i.h5 ] && cmp -s iref.h5 i.h5; then ok "$1: index == the uninterrupted one, byte for byte"
    else bad "$1: the index differs from the uninterrupted one"; fi
    [ ! -e i.h5.parts ] || bad "$1: i.h5.parts left behind"
    rm -rf i.h5 i.h5.parts
}

# ---- scan --index-out
killed "scan 2 -> 3" s.h5 2 1:scan.shard@4:kill "${SCAN[@]}" -o s.h5 --index-out si.h5
resumed "scan 2 -> 3" 3 "${SCAN[@]}" -o s.h5 --index-out si.h5 && same_scan "scan 2 -> 3" 3
killed "scan 3 -> 1" s.h5 3 2:scan.shard@3:kill "${SCAN[@]}" -o s.h5 --index-out si.h5
resumed "scan 3 -> 1" 1 "${SCAN[@]}" -o s.h5 --index-out si.h5 && same_scan "scan 3 -> 1" 1
killed "scan 2 -> 3 -> 1" s.h5 2 0:scan.shard@3:kill "${SCAN[@]}" -o s.h5 --index-out si.h5
killed "scan 2 -> 3 -> 1" s.h5 3 2:scan.shard@2:kill "${SCAN[@]}" -o s.h5 --index-out si.h5
grep -q "resuming: [1-9]" err.txt && ok "scan 2 -> 3 -> 1: the run on 3 ranks resumed before its kill" \
    || bad "scan 2 -> 3 -> 1: the run on 3 ranks did not resume"
resumed "scan 2 -> 3 -> 1" 1 "${SCAN[@]}" -o s.h5 --index-out si.h5 && same_scan "scan 2 -> 3 -> 1" 1

# ---- index
killed "index 2 -> 3" i.h5 2 1:index.shard@4:kill "${IDX[@]}" -o i.h5
resumed "index 2 -> 3" 3 "${IDX[@]}" -o i.h5 && same_index "index 2 -> 3"
killed "index 3 -> 1" i.h5 3 2:index.shard@3:kill "${IDX[@]}" -o i.h5
resumed "index 3 -> 1" 1 "${IDX[@]}" -o i.h5 && same_index "index 3 -> 1"
killed "index 2 -> 3 -> 1" i.h5 2 0:index.shard@3:kill "${IDX[@]}" -o i.h5
killed "index 2 -> 3 -> 1" i.h5 3 1:index.shard@2:kill "${IDX[@]}" -o i.h5
resumed "index 2 -> 3 -> 1" 1 "${IDX[@]}" -o i.h5 && same_index "index 2 -> 3 -> 1"

# ---- damaged state: one clear message, nonzero, no output (then the same
# command with the damage undone resumes)
refused() { # refused WHAT R PATTERN COMMAND...
    local what=$1 r=$2 pat=$3
    shift 3
    on "$r" "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -ne 0 ] && grep -q "$pat" err.txt && [ ! -f s.h5 ] && [ ! -f i.h5 ]; then ok "$what: refused on $r ranks: $(grep -m1 "$pat" err.txt | cut -c1-150)"
    else bad "$what: exit $rc, stderr: $(tail -2 err.txt)"; fi
}
killed "damaged scan state" s.h5 2 1:scan.shard@3:kill "${SCAN[@]}" -o s.h5
cp s.h5.state/rank1.bin rank1.keep
head -c 100 rank1.keep >s.h5.state/rank1.bin
refused "a truncated scan checkpoint" 3 "rank1.bin: unreadable or truncated checkpoint" "${SCAN[@]}" -o s.h5
cp rank1.keep s.h5.state/rank1.bin
resumed "the checkpoint restored" 3 "${SCAN[@]}" -o s.h5
rm -rf s.h5 s.h5.state
killed "damaged index parts" i.h5 2 1:index.shard@4:kill "${IDX[@]}" -o i.h5
cp i.h5.parts/rank0.bin.synced synced.keep
printf '2\n0\n99\n' >i.h5.parts/rank0.bin.synced
refused "a .synced with shard 99 of 24" 3 "rank0.bin.synced is not a list of at most 24 shard ids below 24" "${IDX[@]}" -o i.h5
cp synced.keep i.h5.parts/rank0.bin.synced
resumed "the .synced restored" 1 "${IDX[@]}" -o i.h5 && same_index "the .synced restored"

# negative control: the comparisons see one changed attribute / byte
cp ref1_0.h5 c0.h5
"$PY" -c "import h5py; f = h5py.File('c0.h5', 'r+'); f.attrs.modify('n_trie_nodes', 1)"
if ! cmp -s ref1_0.h5 c0.h5; then ok "control: cmp sees one changed attribute"; else bad "control: cmp missed a change"; fi
cl_finish
