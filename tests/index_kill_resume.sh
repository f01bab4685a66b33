#!/usr/bin/env bash
# index resumes only from what reached the disk (issue 21). A part file may
# hold records past its last fsync (written before a crash, never synced:
# after a power loss they can be zeros or stale bytes). An index stopped
# after 3 shards (a checkpoint: fsync) gets 2 records of garbage appended to
# its part, as such a crash could leave; the same command must then resume
# from the 3 synced shards and write an index byte-identical to one built in
# one go (before the fix it trusted the part's size and assembled the
# garbage). The same with 2 ranks, and after a kill (SIGKILL) half way.
# Env: CORPUSLENS, PYTHON.
. "$(dirname "$0")/lib.sh"
d=$(mktemp -d /tmp/index_kill_resume.XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"

set -e
"$E" demo-corpus --chars 60000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 64 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
"$E" index --model m.h5 --corpus c.h5 --batch 200 -o ref.h5 2>/dev/null
set +e
rec=$((2 * 200 * 32 * 2)) # [Lh, S, C] float16

# garbage N: append N records of 0xff bytes to every part (unsynced records)
garbage() {
    local p
    for p in i.h5.parts/rank*.bin; do
        head -c $(($1 * rec)) /dev/zero | tr '\0' '\377' >>"$p"
    done
}
resume() { # NAME -- COMMAND...: the command resumes and matches ref.h5
    local name=$1
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -ne 0 ]; then
        bad "$name: exit $rc:"; sed 's/^/      /' err.txt | tail -3
    elif ! grep -q "resuming" err.txt; then
        bad "$name: did not resume: $(tail -1 err.txt)"
    elif ! cmp -s i.h5 ref.h5; then
        bad "$name: the resumed index differs from one built in one go ($(grep -m1 resuming err.txt))"
    else
        ok "$name: $(grep -m1 resuming err.txt | sed 's/^corpuslens index: //'), identical to the index built in one go"
    fi
    rm -rf i.h5 i.h5.parts
}

for R in 1 2; do
    if [ $R = 1 ]; then RUN=("$E"); else RUN=(timeout 120 mpiexec -n 2 --oversubscribe "$E"); fi
    CORPUSLENS_INDEX_STOP_AFTER=2 "${RUN[@]}" index --model m.h5 --corpus c.h5 --batch 200 -o i.h5 >/dev/null 2>&1
    [ -s i.h5.parts/rank0.bin ] || bad "$R rank(s): no part after a stop"
    garbage 2
    resume "$R rank(s), 2 unsynced records past the checkpoint" -- "${RUN[@]}" index --model m.h5 --corpus c.h5 --batch 200 -o i.h5
done
# a kill half way, with checkpoints after every shard: whatever the part holds
# past the last checkpoint, the resume matches
(CORPUSLENS_FAULT=0:index.shard@4:kill "$E" index --model m.h5 --corpus c.h5 --batch 200 --checkpoint-every 0.000001 \
    -o i.h5 >/dev/null 2>&1) 2>/dev/null
[ -s i.h5.parts/rank0.bin.synced ] || bad "killed: no record count beside the part"
garbage 1
resume "killed at shard 4, 1 unsynced record" -- "$E" index --model m.h5 --corpus c.h5 --batch 200 -o i.h5
cl_finish
