#!/bin/bash
# Refusals of `corpuslens train`, checked before training starts: each case
# must exit nonzero, print the expected message, write no output file and run
# no step. Environment: CORPUSLENS.
set -u
: "${CORPUSLENS:?}"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for i in $(seq 200); do echo "first citizen before we proceed any further hear me speak $i"; done > "$d/corpus.txt"
{ cat "$d/corpus.txt"; echo "Zounds!"; } > "$d/other.txt"
printf 'tiny corpus\n' > "$d/short.txt"
"$CORPUSLENS" init --config n_layer=1,n_head=2,n_embd=16,block_size=16 --vocab-from "$d/corpus.txt" \
    -o "$d/init.h5" > /dev/null || { echo "init failed"; exit 1; }
small=(--config n_layer=1,n_head=2,n_embd=16,block_size=16 --steps 2 --eval-every 0 --eval-batches 1)
fail=0
expect() { # name, expected message (grep -E), command...
    local name=$1 msg=$2
    shift 2
    rm -f "$d/out.h5"
    "$@" > "$d/stdout" 2> "$d/stderr"
    local rc=$?
    if [ $rc = 0 ] || ! grep -qE -- "$msg" "$d/stderr" || [ -e "$d/out.h5" ] || grep -q '^corpuslens train: step ' "$d/stderr"; then
        echo "FAIL $name (rc $rc): expected /$msg/"; sed 's/^/    /' "$d/stderr"; fail=1
    else
        echo "ok   $name: $(grep -E -- "$msg" "$d/stderr" | head -1)"
    fi
}
T="$CORPUSLENS"
expect "ctx > block_size" "--ctx 32 is outside 1\.\.block_size \(16\)" \
    "$T" train --corpus "$d/corpus.txt" "${small[@]}" --batch 4 --ctx 32 -o "$d/out.h5"
expect "batch 0" "--batch 0: the batch needs at least 1 row" \
    "$T" train --corpus "$d/corpus.txt" "${small[@]}" --batch 0 --ctx 8 -o "$d/out.h5"
expect "batch not divisible by ranks" "--batch 3 is not divisible by the 2 ranks" \
    mpiexec --oversubscribe -n 2 "$T" train --corpus "$d/corpus.txt" "${small[@]}" --batch 3 --ctx 8 -o "$d/out.h5"
expect "corpus character outside the --init vocabulary" "'Z'" \
    "$T" train --corpus "$d/other.txt" --init "$d/init.h5" --steps 2 --batch 4 --ctx 8 -o "$d/out.h5"
expect "unwritable output" "cannot write the output $d/no/such/dir/m.h5" \
    "$T" train --corpus "$d/corpus.txt" "${small[@]}" --batch 4 --ctx 8 -o "$d/no/such/dir/m.h5"
expect "corpus too short for T+1" "too short for --ctx 8" \
    "$T" train --corpus "$d/short.txt" "${small[@]}" --batch 4 --ctx 8 -o "$d/out.h5"
expect "--init with --config" "--config cannot change" \
    "$T" train --corpus "$d/corpus.txt" --init "$d/init.h5" "${small[@]}" --batch 4 --ctx 8 -o "$d/out.h5"
expect "missing --steps" "--steps is required" \
    "$T" train --corpus "$d/corpus.txt" --batch 4 --ctx 8 -o "$d/out.h5"
[ $fail = 0 ] && echo "train refusals OK" || echo "train refusals FAILED"
exit $fail
