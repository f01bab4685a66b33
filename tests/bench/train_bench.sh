#!/bin/bash
# Training figures for issue 6 (not a test): corpuslens train vs the PyTorch
# lecture recipe (tests/bench/train_torch.py), same machine, same run,
# interleaved (the machine is shared: numbers are noisy).
#  1. throughput, lecture architecture 6x384 (6 heads), T=64, B=32, dropout 0.2:
#     tokens/s of training steps (evaluation excluded), C with
#     OPENBLAS_NUM_THREADS=2 vs torch.set_num_threads(2); REPS rounds.
#  2. convergence, 4 layers x 128 (4 heads), T=64, B=32, lr 1e-3, dropout 0.2,
#     STEPS2 steps on TinyShakespeare: final validation loss (20 batches) of both.
# usage: train_bench.sh [CORPUSLENS] ; env SHARED, REPS (2), STEPS1 (6), STEPS2 (300)
set -u
exe=${1:-${CORPUSLENS:-}}
[ -x "$exe" ] || { echo "usage: train_bench.sh path/to/corpuslens"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
corpus=${SHARED:-$here/../../../shared}/data/tinyshakespeare.txt
PY=/usr/bin/python3
REPS=${REPS:-2} STEPS1=${STEPS1:-6} STEPS2=${STEPS2:-300}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2
echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## 1. throughput, 6x384, T=64, B=32 ($STEPS1 steps, first 2 not timed on the torch side)"
for r in $(seq "$REPS"); do
    "$exe" train --corpus "$corpus" --steps "$STEPS1" --batch 32 --ctx 64 --dropout 0.2 --eval-every 0 \
        --eval-batches 1 -o "$d/c.h5" > /dev/null 2> "$d/c.log"
    c=$(tail -1 "$d/c.log" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
    t=$($PY "$here/train_torch.py" "$corpus" --steps "$STEPS1" --warmup 2 --eval-batches 1 | sed -nE 's/torch tokens\/s //p')
    echo "round $r: corpuslens $c tokens/s   pytorch $t tokens/s   ratio $(awk -v a="$c" -v b="$t" 'BEGIN{printf "%.2f", a/b}')   (load $(cut -d' ' -f1 /proc/loadavg))"
done
echo "## 2. convergence, 4x128, T=64, B=32, lr 1e-3, dropout 0.2, $STEPS2 steps"
"$exe" train --corpus "$corpus" --config n_layer=4,n_head=4,n_embd=128,block_size=64 --steps "$STEPS2" \
    --batch 32 --ctx 64 --lr 1e-3 --dropout 0.2 --eval-every 100 --eval-batches 20 -o "$d/s.h5" > "$d/s.out" 2> "$d/s.log"
cat "$d/s.out"
cv=$(grep -E '^ +[0-9]+ ' "$d/s.out" | tail -1 | awk '{print $3}')
ctok=$(tail -1 "$d/s.log" | sed -E 's/.* ([0-9]+) tokens\/s.*/\1/')
tout=$($PY "$here/train_torch.py" "$corpus" --layers 4 --embd 128 --heads 4 --ctx 64 --batch 32 --lr 1e-3 \
    --dropout 0.2 --steps "$STEPS2" --warmup 2 --eval-batches 20)
tv=$(echo "$tout" | sed -nE 's/torch final val loss //p')
ttok=$(echo "$tout" | sed -nE 's/torch tokens\/s //p')
echo "final val loss: corpuslens $cv   pytorch $tv   |diff| $(awk -v a="$cv" -v b="$tv" 'BEGIN{d=a-b; if(d<0)d=-d; printf "%.4f", d}')"
echo "(small config throughput: corpuslens $ctok tokens/s, pytorch $ttok tokens/s)"
