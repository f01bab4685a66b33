#!/bin/sh
# Scan benchmark (a figure generator, not a test): a slice of the TinyShakespeare
# L=10 scan on 2 ranks (1000 prompts x K sampled shards of 2048 substrings),
# extrapolated to the full 858,923 x 20,000 x 6 scan; GFLOPS against a
# cblas_sgemm measured in the same run; peak RSS; the same slice in plain
# PyTorch (2 threads) for the throughput ratio; the same slice again with the
# pruning bound (PRUNE_RANK=r, default 31; 0 skips it): phase times side by
# side, fraction pruned per block, and how many bins differ.
# OPENBLAS_CORETYPE, when set, reaches every rank (compare runs with the same
# kernels); TORCH=0 skips the PyTorch slice.
# usage: tests/bench/scan_bench.sh [WORKDIR] [K]   (env CORPUSLENS, SHARED, PRUNE_RANK, TORCH, OPENBLAS_CORETYPE)
set -e
W=${1:-/tmp/scanbench}
K=${2:-25}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
E=${CORPUSLENS:-corpuslens}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$W"
cd "$W"
[ -f ts.h5 ] || "$E" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" -o ts.h5
head -1000 "$SHARED/data/paper-prompts-L10.txt" > p1000.txt
[ -f c1000.h5 ] || "$E" prepare "$SHARED/data/tinyshakespeare.txt" --len 10 --prompt-file p1000.txt --vocab-from ts.h5 -o c1000.h5
# sgemm reference in the same run (1 thread, the shape of the MLP sgemm)
cat > sg.c <<'CEOF'
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(void) {
    int M = 4096, N = 1536, K = 384, it = 20;
    float *a = malloc(4L * M * K), *b = malloc(4L * N * K), *c = malloc(4L * M * N);
    for (long i = 0; i < (long)M * K; i++) a[i] = (i % 7) * 0.1f;
    for (long i = 0; i < (long)N * K; i++) b[i] = (i % 5) * 0.1f;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < it; i++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = t1.tv_sec - t0.tv_sec + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("%.1f\n", 2.0 * M * N * K * it / s / 1e9);
    return 0;
}
CEOF
cc -O2 sg.c -o sg $(pkg-config --cflags --libs openblas)
echo "load before: $(cat /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
SG1=$(./sg)
start=$(date +%s.%N)
CORPUSLENS_SCAN_PRUNE_RANK=0 CORPUSLENS_SCAN_SAMPLE_SHARDS=$K mpirun -n 2 -x OPENBLAS_NUM_THREADS \
    -x CORPUSLENS_SCAN_SAMPLE_SHARDS -x CORPUSLENS_SCAN_PRUNE_RANK "$E" scan --model ts.h5 --corpus c1000.h5 -o slice.h5 2> scan.log
end=$(date +%s.%N)
# the same slice with the pruning bound (CORPUSLENS_SCAN_PRUNE_RANK, 0 = skip)
PR=${PRUNE_RANK:-31}
if [ "$PR" != 0 ]; then
    CORPUSLENS_SCAN_PRUNE_RANK=$PR CORPUSLENS_SCAN_SAMPLE_SHARDS=$K mpirun -n 2 -x OPENBLAS_NUM_THREADS \
        -x CORPUSLENS_SCAN_SAMPLE_SHARDS -x CORPUSLENS_SCAN_PRUNE_RANK "$E" scan --model ts.h5 --corpus c1000.h5 \
        -o slice-pruned.h5 2> scan-pruned.log
fi
SG2=$(./sg)
grep -v '^corpuslens scan: [0-9]*/' scan.log
echo "sgemm (1 thread, 4096x1536x384) before/after: $SG1 / $SG2 GFLOPS per core"
$PY - "$start" "$end" "$SG1" "$SG2" <<'PEOF'
import sys, h5py
start, end, sg1, sg2 = map(float, sys.argv[1:])
s = h5py.File("slice.h5", "r")
a = s.attrs
P, N, S, K = int(a["n_prompts"]), int(a["n_substrings"]), int(a["shard_size"]), int(a["sampled_shards"])
nsub = min(N, K * S)
wall = end - start
fl = float(a["flops"])
sg = (sg1 + sg2) / 2
# per-substring costs from the slice; the prompt forward scales with P
lines = open("scan.log").read()
import re
m = re.search(r"prompts ([0-9.]+) s, trie forward ([0-9.]+) s, similarity sgemm ([0-9.]+) s, selection/binning ([0-9.]+) s, reduce\+write ([0-9.]+) s", lines)
tp, tf, tc, tsel, tw = map(float, m.groups())
# full scan on 2 ranks: forward per substring x N, cosine+selection per (prompt x substring) x 20000 x N
full_fwd = tf * N / nsub
full_cos = (tc + tsel) * (20000 / P) * (N / nsub)
full_prompts = tp * 20000 / P
full = full_fwd + full_cos + full_prompts
print(f"slice: {P} prompts x {nsub} substrings x 6 blocks on 2 ranks: wall {wall:.1f} s (incl. startup/write), "
      f"{fl / 1e9:.0f} GFLOP, {fl / 1e9 / float(a['wall_seconds']):.1f} GFLOPS achieved vs sgemm {sg:.1f} GFLOPS/core "
      f"x 2 = {2 * sg:.1f}; pairs > 0.7: {int(a['n_prefiltered_pairs'])}")
print(f"extrapolated full scan (858,923 x 20,000 x 6, 2 ranks): forward {full_fwd / 60:.1f} min + cosine/selection "
      f"{full_cos / 60:.1f} min + prompts {full_prompts / 60:.1f} min = {full / 60:.1f} min")
PEOF
if [ "$PR" != 0 ]; then
    echo "with the pruning bound (CORPUSLENS_SCAN_PRUNE_RANK=$PR):"
    grep -v '^corpuslens scan: [0-9]*/' scan-pruned.log
    $PY - <<'PEOF'
import re
def phases(f):
    m = re.search(r"similarity sgemm ([0-9.]+) s, selection/binning ([0-9.]+) s", open(f).read())
    return float(m.group(1)), float(m.group(2))
b, p = phases("scan.log"), phases("scan-pruned.log")
print(f"similarity sgemm + selection (CPU s per rank): brute force {b[0]:.1f} + {b[1]:.1f} = {sum(b):.1f}, "
      f"pruned {p[0]:.1f} + {p[1]:.1f} = {sum(p):.1f}: ratio brute/pruned {sum(b) / max(sum(p), 1e-9):.2f}")
PEOF
    $PY - <<'PEOF'
import h5py, numpy as np
a, b = h5py.File("slice.h5", "r"), h5py.File("slice-pruned.h5", "r")
d = int((a["freq/n_matches"][()] != b["freq/n_matches"][()]).sum())
c = int((a["freq/counts"][()] != b["freq/counts"][()]).any(-1).sum())
print(f"pruned vs brute force: {d} (prompt, block, bin) match counts and {c} count rows differ "
      f"(pairs within 1e-5 of a bin edge may differ); prefiltered pairs {int(a.attrs['n_prefiltered_pairs'])} vs "
      f"{int(b.attrs['n_prefiltered_pairs'])}")
PEOF
fi
if [ "${TORCH:-1}" != 0 ]; then
    echo "torch slice:"
    start=$(date +%s.%N)
    $PY "$HERE/scan_torch.py" ts.h5 c1000.h5 "$K" 2048 2
    end=$(date +%s.%N)
    echo "torch wall $(echo "$end - $start" | bc) s"
fi
echo "load after: $(cat /proc/loadavg)"
