#!/bin/sh
# Scan scaling benchmark (a figure generator, not a test), for the cost model
# in README.md ("Cost model of a large scan"):
#  A. peak RSS per rank and the reduce+write time against the rank count
#     (1, 2, 4, 8 ranks; oversubscribed on a small machine) on one corpus;
#     the files are compared byte for byte (wall_seconds zeroed);
#  B. time and peak RSS per rank against corpus size (1x, 2x, 4x prefixes of
#     TinyShakespeare, L = 10, the same P prompts) on 2 ranks.
# The lecture model (6 blocks, C 384, V 65) from ../shared; hook mlp_out
# (6 blocks), prefilter 0.7, bins 0.01, cap 1000: the paper's settings.
#  FULL=1 adds the whole of TinyShakespeare (N = 858,923) on 2 ranks to B
#     (about 5 min of 2 cores more).
# Each rank runs under GNU time (its own peak RSS). Prints one table per part,
# the fitted per-substring constants, and the README's cost model beside each
# point of B (its constants: env MODEL_A_MS, MODEL_B_NS, MODEL_T0_S).
# usage: tests/bench/scan_scale_bench.sh [WORKDIR] [CHARS_1X] [PROMPTS]
#        (env CORPUSLENS, SHARED, PYTHON, FULL; defaults /tmp/scanscale 25000 1000)
set -e
W=${1:-/tmp/scanscale}
B=${2:-25000}
P=${3:-1000}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
E=${CORPUSLENS:-corpuslens}
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$W"
cd "$W"
[ -f ts.h5 ] || "$E" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" -o ts.h5 >/dev/null
for k in 1 2 4; do
    head -c $((B * k)) "$SHARED/data/tinyshakespeare.txt" > t$k.txt
    [ -f c$k.h5 ] || "$E" prepare t$k.txt --len 10 --prompts "$P" --seed 1 --vocab-from ts.h5 -o c$k.h5 >/dev/null
done
if [ -n "${FULL:-}" ]; then
    [ -f cfull.h5 ] || "$E" prepare "$SHARED/data/tinyshakespeare.txt" --len 10 --prompts "$P" --seed 1 --vocab-from ts.h5 -o cfull.h5 >/dev/null
fi
cat > rt.sh <<'SEOF'
#!/bin/sh
# one rank under GNU time: its peak RSS (KB), wall, user and system seconds
exec /usr/bin/time -f "%M %e %U %S" -o "$RT_OUT.$OMPI_COMM_WORLD_RANK" "$@"
SEOF
chmod +x rt.sh
run() { # ranks corpus tag
    rm -f "rt.$3".*
    s=$(date +%s.%N)
    RT_OUT=rt.$3 mpiexec -n "$1" --oversubscribe -x RT_OUT ./rt.sh "$E" scan --model ts.h5 --corpus "$2" -o "s.$3.h5" 2> "log.$3"
    e=$(date +%s.%N)
    echo "$s $e" > "wall.$3"
}
echo "load before: $(cat /proc/loadavg)"
for r in 1 2 4 8; do run $r c1.h5 r$r; done
for k in 2 4; do run 2 c$k.h5 k$k; done
[ -n "${FULL:-}" ] && run 2 cfull.h5 full
echo "load after: $(cat /proc/loadavg)"
"$PY" - "$P" "${MODEL_A_MS:-0.65}" "${MODEL_B_NS:-33}" "${MODEL_T0_S:-3}" "${FULL:+1}" <<'PEOF'
import sys, glob, re, shutil, h5py, filecmp
P = int(sys.argv[1])
model_a, model_b, model_t0 = float(sys.argv[2]) * 1e-3, float(sys.argv[3]) * 1e-9, float(sys.argv[4])
full = sys.argv[5] == "1"
def stats(tag):
    rt = [open(f).read().split() for f in glob.glob(f"rt.{tag}.*")]
    rss = [int(r[0]) / 1024 for r in rt]
    cpu = [float(r[2]) + float(r[3]) for r in rt if len(r) >= 4] or [float("nan")]
    s, e = map(float, open(f"wall.{tag}").read().split())
    log = open(f"log.{tag}").read()
    ph = dict(re.findall(r"(prompts|trie forward|similarity sgemm|selection/binning|reduce\+write) ([0-9.]+) s", log))
    a = h5py.File(f"s.{tag}.h5", "r").attrs
    return dict(rss_max=max(rss), rss_min=min(rss), wall=e - s, cpu=max(cpu), ph={k: float(v) for k, v in ph.items()},
                N=int(a["n_substrings"]), pairs=int(a["n_prefiltered_pairs"]), stored=int(a["n_stored_matches"]),
                nodes=int(a["n_trie_nodes"]))
def zero(tag):
    shutil.copy(f"s.{tag}.h5", f"z.{tag}.h5")
    with h5py.File(f"z.{tag}.h5", "r+") as f:
        f.attrs.modify("wall_seconds", 0.0)
    return f"z.{tag}.h5"
print(f"A. ranks (corpus c1, P = {P}): peak RSS per rank, MB (max / min over ranks), wall, reduce+write")
print("ranks  N        RSS max  RSS min  wall s  CPU s/rank  write s  bytes = 1 rank")
z1 = zero("r1")
for r in (1, 2, 4, 8):
    t = stats(f"r{r}")
    same = filecmp.cmp(z1, zero(f"r{r}"), shallow=False)
    print(f"{r:<6} {t['N']:<8} {t['rss_max']:8.1f} {t['rss_min']:8.1f} {t['wall']:7.1f} {t['cpu']:10.1f} "
          f"{t['ph'].get('reduce+write', 0):8.2f}  {same}")
print(f"B. corpus size on 2 ranks (P = {P}): time and peak RSS per rank")
print("size  N        nodes     pairs       stored   wall s  CPU s/rank  model s  forward s  sgemm s  select s  write s  RSS max MB")
rows = []
sizes = [("1x", "r2"), ("2x", "k2"), ("4x", "k4")] + ([("full", "full")] if full else [])
for k, tag in sizes:
    t = stats(tag)
    rows.append((k, t))
    ph = t["ph"]
    model = model_t0 + (model_a + model_b * P) * t["N"] / 2
    print(f"{k:<5} {t['N']:<8} {t['nodes']:<9} {t['pairs']:<11} {t['stored']:<8} {t['wall']:7.1f} {t['cpu']:10.1f} "
          f"{model:8.1f} {ph.get('trie forward', 0):9.2f} {ph.get('similarity sgemm', 0):8.2f} "
          f"{ph.get('selection/binning', 0):8.2f} {ph.get('reduce+write', 0):8.2f} {t['rss_max']:10.1f}")
rows = rows[:3]  # the fit below: 1x -> 4x
# per-rank constants: seconds per (substring x rank share), MB per substring
(k1, a), (k4, b) = rows[0], rows[-1]
dN = b["N"] - a["N"]
fwd = (b["ph"]["trie forward"] - a["ph"]["trie forward"]) * 2 / dN
sg = (b["ph"]["similarity sgemm"] + b["ph"]["selection/binning"] - a["ph"]["similarity sgemm"] - a["ph"]["selection/binning"]) * 2 / dN / P
mem = (b["rss_max"] - a["rss_max"]) / dN
cpu = (b["cpu"] - a["cpu"]) * 2 / dN
print(f"fit (1x -> 4x, 2 ranks): forward {fwd * 1e3:.3f} ms per substring, similarity+selection "
      f"{sg * 1e9:.1f} ns per (substring x prompt) (6 blocks), CPU {cpu * 1e3:.3f} ms per substring (both ranks), "
      f"RSS +{mem * 1e6:.0f} bytes per substring per rank, RSS at 1x {a['rss_max']:.0f} MB")
PEOF
