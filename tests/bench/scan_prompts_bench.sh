#!/bin/sh
# The scan's prompt side (issue 24), a figure generator, not a test: a
# 40,000-character TinyShakespeare slice (L = 10, 37,146 substrings) x 20,000
# prompts sampled from it (--prompts 20000 --seed 1337) x 6 blocks (mlp_out),
# on 2 ranks, the whole scan (no sampled shards), side by side with the plain
# PyTorch scan of the same substrings and prompts (tests/bench/scan_torch.py,
# 2 threads) in the same run. Prints the scan's phase table (CPU s per rank,
# reduce+write wall), the walls and the ratio torch / corpuslens, and the load
# average before and after (the machine is shared: the ratio of one run is the
# figure). BASE=/path/to/an/older/corpuslens runs that binary too, on the same
# inputs, before the current one (its phase table and ratio beside).
# usage: tests/bench/scan_prompts_bench.sh [WORKDIR] [CHARS] [PROMPTS]
#        (env CORPUSLENS, BASE, SHARED, PYTHON, TORCH=0 skips PyTorch)
set -e
W=${1:-/tmp/scanprompts}
CH=${2:-40000}
NP=${3:-20000}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
E=${CORPUSLENS:-corpuslens}
PY=${PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$W"
cd "$W"
[ -f ts.h5 ] || "$E" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" -o ts.h5 >/dev/null
head -c "$CH" "$SHARED/data/tinyshakespeare.txt" > slice.txt
[ -f "c$CH-$NP.h5" ] || "$E" prepare slice.txt --len 10 --prompts "$NP" --seed 1337 --vocab-from ts.h5 -o "c$CH-$NP.h5" >/dev/null
C=c$CH-$NP.h5
run() { # binary tag
    s=$(date +%s.%N)
    mpirun -n 2 -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS "$1" scan --model ts.h5 --corpus "$C" -o "s.$2.h5" 2> "log.$2"
    e=$(date +%s.%N)
    echo "$s $e" > "wall.$2"
}
echo "load before: $(cat /proc/loadavg)"
[ -n "${BASE:-}" ] && run "$BASE" base
run "$E" new
if [ "${TORCH:-1}" != 0 ]; then
    NS=$("$PY" -c "import h5py,sys; n=h5py.File('$C','r')['substrings/tokens'].shape[0]; print((n+2047)//2048)")
    s=$(date +%s.%N)
    "$PY" "$HERE/scan_torch.py" ts.h5 "$C" "$NS" 2048 2 > log.torch
    e=$(date +%s.%N)
    echo "$s $e" > wall.torch
fi
echo "load after: $(cat /proc/loadavg)"
"$PY" - <<'PEOF'
import os, re, h5py
def wall(t):
    s, e = map(float, open(f"wall.{t}").read().split())
    return e - s
torch = wall("torch") if os.path.exists("wall.torch") else None
if torch:
    print(open("log.torch").read().strip())
rows = ("prompt forward", "trie forward", "similarity sgemm", "selection", "reduce+write (wall)")
tags = [t for t in ("base", "new") if os.path.exists(f"wall.{t}")]
ph = {}
for t in tags:
    m = re.search(r"prompts ([0-9.]+) s, trie forward ([0-9.]+) s, similarity sgemm ([0-9.]+) s, "
                  r"selection/binning ([0-9.]+) s, reduce\+write ([0-9.]+) s", open(f"log.{t}").read())
    ph[t] = list(map(float, m.groups())) if m else [float("nan")] * 5
a = h5py.File(f"s.{tags[-1]}.h5", "r").attrs
print(f"case: {int(a['n_substrings'])} substrings x {int(a['n_prompts'])} prompts x {int(a['n_hook_blocks'])} blocks, 2 ranks")
print("| phase (CPU s per rank; reduce+write wall) | " + " | ".join(tags) + " |")
print("|---|" + "---|" * len(tags))
for i, r in enumerate(rows):
    print(f"| {r} | " + " | ".join(f"{ph[t][i]:.1f}" for t in tags) + " |")
print("| wall (mpirun, incl. startup) | " + " | ".join(f"{wall(t):.1f}" for t in tags) + " |")
if torch:
    print("| PyTorch wall / this wall | " + " | ".join(f"{torch / wall(t):.2f}x" for t in tags) + " |")
    print(f"PyTorch wall {torch:.1f} s")
if len(tags) == 2:
    b, n = h5py.File("s.base.h5", "r"), h5py.File("s.new.h5", "r")
    same = all((b[k][()] == n[k][()]).all() for k in ("freq/counts", "freq/n_matches", "matches/index", "matches/substring"))
    print(f"base and new: /freq/counts, /freq/n_matches, /matches/index, /matches/substring identical: {same}")
PEOF
