#!/bin/sh
# Memory and file size against V (issue 25 item 3): a figure generator, not a
# test. On the BPE job's outputs (jobs/shakespeare-bpe.ini: model.h5 and
# corpus.h5 in DIR; V = 50,257, 1,000 prompts), OLD and NEW corpuslens each
# run, one after the other, with the job's settings:
#   scan      --hook mlp_out --prefilter 0.7 --bin-width 0.01
#   reduce    the job's [reduce] thresholds and weights
#   tune      the job's [tune] (train fraction 0.5, seed 1)
#   tune_soft tune --soft, --max-train SOFT_TRAIN (default 100: the old fit set
#             is SOFT_TRAIN x 4 blocks x 30 bins x V int32, 2.4 GB at 100)
#   explain   --eval-text 1000 (the [reduce] values) -o explain.h5 on an index
#             NEW builds once
# Each of OLD's runs reads OLD's scan, NEW's NEW's. Printed: wall seconds,
# peak RSS (GNU time) and the output's size, OLD then NEW, and whether the
# two print the same (stdout, the folder names aside). One process, one thread each.
# usage: tests/bench/bpe_memory_bench.sh DIR [WORKDIR]   (env OLD, NEW, SOFT_TRAIN)
set -eu
D=${1:?usage: bpe_memory_bench.sh DIR [WORKDIR]}
W=${2:-/tmp/bpemem}
OLD=${OLD:?OLD must name the corpuslens before the change}
NEW=${NEW:-corpuslens}
SOFT_TRAIN=${SOFT_TRAIN:-100}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
THR=0.85,0.76,0.81,0.89
WTS=0.1,1.5,6,0.01
mkdir -p "$W/old" "$W/new"
# $1 label, $2 side (old|new), $3 output (size; "" = none), then the command
measure() {
    label=$1 side=$2 out=$3
    shift 3
    /usr/bin/time -f '%e %M' -o "$W/$side/$label.time" "$@" >"$W/$side/$label.out" 2>"$W/$side/$label.err" ||
        echo "$label ($side): exit $? (see $W/$side/$label.err)" >&2
    set -- $(tail -1 "$W/$side/$label.time")
    size=-
    [ -z "$out" ] || [ ! -e "$out" ] || size=$(du -sk "$out" | cut -f1)
    printf '%-10s %-4s %8s s %9.1f MiB %12s KiB\n' "$label" "$side" "$1" "$(awk "BEGIN{print $2 / 1024}")" "$size"
}
[ -f "$W/index.h5" ] || "$NEW" index --model "$D/model.h5" --corpus "$D/corpus.h5" -o "$W/index.h5" >/dev/null
echo "stage      side       wall     peak RSS       output"
for side in old new; do
    if [ $side = old ]; then B=$OLD; else B=$NEW; fi
    O=$W/$side
    measure scan $side "$O/scan.h5" "$B" scan --model "$D/model.h5" --corpus "$D/corpus.h5" --hook mlp_out \
        --prefilter 0.7 --bin-width 0.01 -o "$O/scan.h5"
    rm -rf "$O/report"
    measure reduce $side "$O/report" "$B" reduce "$O/scan.h5" --thresholds $THR --weights $WTS -o "$O/report"
    measure tune $side "" "$B" tune "$O/scan.h5" --train-fraction 0.5 --seed 1 --thresholds $THR --weights $WTS
    measure tune_soft $side "" "$B" tune "$O/scan.h5" --soft --train-fraction 0.5 --seed 1 --max-train "$SOFT_TRAIN"
    measure explain $side "$O/explain.h5" "$B" explain --index "$W/index.h5" --corpus "$D/corpus.h5" \
        --model "$D/model.h5" --eval-text 1000 --thresholds $THR --weights $WTS --quiet -o "$O/explain.h5"
done
echo "same figures (stdout lines with a mean H, old vs new):"
for label in reduce tune tune_soft explain; do
    sed "s|$W/old|W|g" "$W/old/$label.out" >"$W/old/$label.cmp"
    sed "s|$W/new|W|g" "$W/new/$label.out" >"$W/new/$label.cmp"
    if cmp -s "$W/old/$label.cmp" "$W/new/$label.cmp"; then echo "  $label: stdout identical"
    else echo "  $label: stdout differs (diff $W/old/$label.cmp $W/new/$label.cmp)"; fi
done
