#!/bin/bash
# Training figures (issues 6 and 14; not a test): corpuslens's trainer vs the
# PyTorch lecture recipe (tests/bench/train_torch.py), same machine, same run.
#  1. throughput, lecture architecture 6x384 (6 heads), dropout 0.2, at
#     (a) T=64, B=32 and (b) T=256, B=16: the C side is bench_train (beside the
#     corpuslens binary: cl_train_forward_backward + AdamW, one rank), the
#     PyTorch side train_torch.py; OMP/OPENBLAS_NUM_THREADS=2 and
#     torch.set_num_threads(2). Each side reports B*T / its MEDIAN step time
#     (warm-up steps excluded). C and PyTorch rounds are INTERLEAVED and the
#     best of REPS rounds of each side is compared: the machine may be shared,
#     and the best round is the one least disturbed by others.
#     Also: the trainer's achieved GFLOPS (3 x forward FLOPs per step, see
#     bench_train.c) against an sgemm of the feed-forward shape measured in the
#     same bench_train process (OpenBLAS's own 2 threads).
#  2. convergence, 4 layers x 128 (4 heads), T=64, B=32, lr 1e-3, dropout 0.2,
#     STEPS2 steps on TinyShakespeare: final validation loss (20 batches) of both.
# usage: train_bench.sh [CORPUSLENS] ; env SHARED, REPS (3), STEPS1 (6), STEPS1B (4),
#        STEPS2 (300), ONLY (a|b|ab, default ab; 2 runs unless ONLY is set)
set -u
exe=${1:-${CORPUSLENS:-}}
[ -x "$exe" ] || { echo "usage: train_bench.sh path/to/corpuslens"; exit 2; }
bt=$(dirname "$exe")/bench_train
[ -x "$bt" ] || { echo "bench_train not found beside $exe (build the bench_train target)"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
corpus=${SHARED:-$here/../../../shared}/data/tinyshakespeare.txt
PY=/usr/bin/python3
REPS=${REPS:-3} STEPS1=${STEPS1:-6} STEPS1B=${STEPS1B:-4} STEPS2=${STEPS2:-300} ONLY=${ONLY:-}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2
echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (shared: best of $REPS interleaved rounds)"
kv() { sed -nE "s/^$1 //p" "$2"; }
throughput() { # name T B steps warmup
    local name=$1 T=$2 B=$3 steps=$4 warm=$5 bc=0 bt_=0 bg=0 bs=0 r c t
    echo "## 1$name. throughput, 6x384, T=$T, B=$B, dropout 0.2 ($steps steps, $warm warm-up; median step)"
    for r in $(seq "$REPS"); do
        "$bt" --B "$B" --T "$T" --steps $((steps - warm)) --warmup "$warm" --dropout 0.2 > "$d/c.out" 2>&1 \
            || { cat "$d/c.out"; return 1; }
        c=$(kv tokens_per_s "$d/c.out")
        $PY "$here/train_torch.py" "$corpus" --ctx "$T" --batch "$B" --steps "$steps" --warmup "$warm" \
            --eval-batches 1 > "$d/t.out" 2>&1 || { cat "$d/t.out"; return 1; }
        t=$(sed -nE 's/torch median tokens\/s //p' "$d/t.out")
        echo "round $r: corpuslens $c tokens/s ($(kv train_gflops "$d/c.out") GFLOPS; sgemm $(kv sgemm_gflops "$d/c.out"))   pytorch $t tokens/s   ratio $(awk -v a="$c" -v b="$t" 'BEGIN{printf "%.2f", a/b}')   (load $(cut -d' ' -f1 /proc/loadavg))"
        if awk -v a="$c" -v b="$bc" 'BEGIN{exit !(a>b)}'; then
            bc=$c bg=$(kv train_gflops "$d/c.out")
        fi
        awk -v a="$(kv sgemm_gflops "$d/c.out")" -v b="$bs" 'BEGIN{exit !(a>b)}' && bs=$(kv sgemm_gflops "$d/c.out")
        awk -v a="$t" -v b="$bt_" 'BEGIN{exit !(a>b)}' && bt_=$t
    done
    echo "best of $REPS: corpuslens $bc tokens/s, pytorch $bt_ tokens/s: ratio $(awk -v a="$bc" -v b="$bt_" 'BEGIN{printf "%.2f", a/b}');" \
         "trainer $bg GFLOPS = $(awk -v a="$bg" -v b="$bs" 'BEGIN{printf "%.2f", a/b}') of the best sgemm ($bs GFLOPS, $(kv sgemm_shape "$d/c.out"))"
}
case "${ONLY:-ab}" in *a*) throughput a 64 32 "$STEPS1" 2 ;; esac
case "${ONLY:-ab}" in *b*) throughput b 256 16 "$STEPS1B" 1 ;; esac
[ -n "$ONLY" ] && exit 0
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
