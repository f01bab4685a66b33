#!/bin/bash
# Rank invariance and resume equivalence of `corpuslens train`.
#  1. mpiexec -n 1 --batch 8 vs -n 2 (4 rows each): the same global batch
#     (one seeded stream), rank-independent dropout masks -> the same weights
#     within 1e-6 after 6 steps (with dropout 0.2 and without).
#  2. 8 steps vs 4 steps + --resume to 8: bitwise identical weights and
#     AdamW state (1 rank), and within 1e-6 for 2 ranks.
# Environment: CORPUSLENS, TESTDATA (tests/data: tinyshakespeare), PYTHON (with h5py).
set -u
: "${CORPUSLENS:?}" "${PYTHON:=/usr/bin/python3}"
here=$(cd "$(dirname "$0")" && pwd)
cmp="$PYTHON $here/train_compare.py"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
ts=${TESTDATA:-$(dirname "$0")/data}/tinyshakespeare.txt
if [ -f "$ts" ]; then
    head -c 100000 "$ts" > "$d/corpus.txt"
else
    for i in $(seq 400); do echo "First Citizen: before we proceed any further, hear me speak $i."; done > "$d/corpus.txt"
fi
MPI="mpiexec --oversubscribe"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
common=(train --corpus "$d/corpus.txt" --config n_layer=2,n_head=4,n_embd=32,block_size=32
        --batch 8 --ctx 16 --lr 1e-3 --eval-every 3 --eval-batches 2 --seed 7)
fail=0
run() { "$@" > "$d/log" 2>&1 || { echo "FAILED: $*"; cat "$d/log"; fail=1; }; }
check() { echo "== $1"; shift; "$@" || fail=1; }

for p in 0 0.2; do
    run $MPI -n 1 "$CORPUSLENS" "${common[@]}" --steps 6 --dropout $p -o "$d/r1.h5"
    run $MPI -n 2 "$CORPUSLENS" "${common[@]}" --steps 6 --dropout $p -o "$d/r2.h5"
    check "1 rank vs 2 ranks, dropout $p" $cmp "$d/r1.h5" "$d/r2.h5" 1e-6
done

run "$CORPUSLENS" "${common[@]}" --steps 8 --dropout 0.2 -o "$d/full.h5"
run "$CORPUSLENS" "${common[@]}" --steps 4 --dropout 0.2 -o "$d/half.h5"
run "$CORPUSLENS" train --resume "$d/half.h5" --steps 8 -o "$d/resumed.h5"
grep -q "resuming" "$d/log" || { echo "resume did not say so"; cat "$d/log"; fail=1; }
check "8 steps vs 4 + resume to 8 (1 rank, bitwise)" $cmp "$d/full.h5" "$d/resumed.h5" 0 --same-train

run $MPI -n 2 "$CORPUSLENS" "${common[@]}" --steps 8 --checkpoint-every 4 --dropout 0.2 -o "$d/full2.h5"
run $MPI -n 2 "$CORPUSLENS" "${common[@]}" --steps 4 --dropout 0.2 -o "$d/half2.h5"
run $MPI -n 2 "$CORPUSLENS" train --resume "$d/half2.h5" --steps 8 -o "$d/resumed2.h5"
check "8 steps vs 4 + resume to 8 (2 ranks)" $cmp "$d/full2.h5" "$d/resumed2.h5" 0 --same-train

# the loss table is in the model file and on stdout
run "$CORPUSLENS" "${common[@]}" --steps 6 --dropout 0 -o "$d/t.h5"
rows=$(grep -cE '^ +[0-9]+ +[0-9.]+ +[0-9.]+$' "$d/log")
check "loss table rows on stdout (steps 0 3 6)" test "$rows" = 3
check "/train/loss is [3, 3]" $PYTHON -c "import h5py,sys; s=h5py.File('$d/t.h5')['train/loss'].shape; print(s); sys.exit(s!=(3,3))"

[ $fail = 0 ] && echo "train invariance OK" || echo "train invariance FAILED"
exit $fail
