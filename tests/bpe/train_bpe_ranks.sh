#!/bin/bash
# Rank invariance and resume of `corpuslens train --tokenizer` (GPT-2 BPE
# tokens; a tiny tokenizer written by tests/bpe/tiny_tokenizer.py, no npm):
#  1. mpiexec -n 1 --batch 8 vs -n 2 (4 rows each), dropout 0.2: the same
#     weights within 1e-6 after 6 steps (one batch stream, rank-independent
#     dropout masks, as the char trainer);
#  2. 8 steps vs 4 steps + --resume to 8 (1 rank): bitwise identical weights
#     and AdamW state.
# Environment: CORPUSLENS, TESTDATA, PYTHON (with h5py).
set -u
: "${CORPUSLENS:?}" "${PYTHON:=/usr/bin/python3}"
here=$(cd "$(dirname "$0")" && pwd)
cmp="$PYTHON $here/../train_compare.py"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
head -c 30000 "${TESTDATA:-$here/../data}/tinyshakespeare.txt" > "$d/corpus.txt"
$PYTHON "$here/tiny_tokenizer.py" "$d/tok" > /dev/null || { echo "tiny_tokenizer.py failed"; exit 1; }
MPI="mpiexec --oversubscribe"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
common=(train --corpus "$d/corpus.txt" --tokenizer "$d/tok" --config n_layer=2,n_head=4,n_embd=32,block_size=32
        --batch 8 --ctx 16 --lr 1e-3 --eval-every 3 --eval-batches 2 --seed 7 --dropout 0.2)
fail=0
run() { "$@" > "$d/log" 2>&1 || { echo "FAILED: $*"; cat "$d/log"; fail=1; }; }
check() { echo "== $1"; shift; "$@" || fail=1; }

run $MPI -n 1 "$CORPUSLENS" "${common[@]}" --steps 6 -o "$d/r1.h5"
run $MPI -n 2 "$CORPUSLENS" "${common[@]}" --steps 6 -o "$d/r2.h5"
check "1 rank vs 2 ranks (BPE tokens, dropout 0.2)" $cmp "$d/r1.h5" "$d/r2.h5" 1e-6
run "$CORPUSLENS" "${common[@]}" --steps 8 -o "$d/full.h5"
run "$CORPUSLENS" "${common[@]}" --steps 4 -o "$d/half.h5"
run "$CORPUSLENS" train --resume "$d/half.h5" --tokenizer "$d/tok" --steps 8 -o "$d/resumed.h5"
check "8 steps vs 4 + resume to 8 (1 rank, bitwise)" $cmp "$d/full.h5" "$d/resumed.h5" 0 --same-train
check "the model carries /tokenizer" $PYTHON -c "import h5py,sys; f=h5py.File('$d/resumed.h5'); sys.exit(not ('tokenizer' in f and f['tokenizer/tokens'].shape == (267,)))"
[ $fail = 0 ] && echo "train BPE ranks OK" || echo "train BPE ranks FAILED"
exit $fail
