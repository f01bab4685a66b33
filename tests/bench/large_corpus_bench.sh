#!/bin/sh
# A larger corpus (issue 26, item 4), a figure generator, not a test:
# TinyShakespeare followed by the King James Bible of Debian's bible-kjv-text
# (about 5.3 MB in all), L = 10, the lecture model (6 x 384, V 65), 2 ranks.
#  1. the Bible's text: `bible Gen1:1-Rev22:21` (package bible-kjv), its
#     verse numbers and chapter headings removed and its parentheses deleted
#     (digits and parentheses are outside the model's 65 characters, and
#     prepare refuses such a text: its message is printed once);
#  2. the growth of the unique substrings and of the trie nodes with the
#     corpus size (prefixes of TinyShakespeare, of the Bible, and of the two
#     together), computed here in Python as prepare and the scan count them;
#  3. prepare of TinyShakespeare and of the two together (CPU, peak RSS, file);
#  4. a sampled scan (CORPUSLENS_SCAN_SAMPLE_SHARDS) of P prompts sampled from
#     each corpus, TinyShakespeare and the large corpus side by side, each rank
#     under GNU time (CPU, peak RSS), extrapolated to the whole corpus;
#  5. index of the large corpus for its first INDEX_SHARDS shards per rank
#     (CORPUSLENS_INDEX_STOP_AFTER; 1 shard per rank too, for the fixed cost);
#  6. the cost model of docs/performance.md beside each measured figure, and
#     the estimate for a corpus 100 x TinyShakespeare (111.5 M characters).
# usage: tests/bench/large_corpus_bench.sh [WORKDIR] [PROMPTS] [SAMPLE_SHARDS]
#        (env CORPUSLENS, SHARED, PYTHON; TS_SAMPLE shards of TinyShakespeare's
#        scan (default SAMPLE_SHARDS / 4); INDEX_SHARDS per rank (default 4);
#        NODE_CORES, NODE_GB for the node-hours (default 32, 256); model
#        constants MODEL_A_MS, MODEL_B_NS, MODEL_T0_S, MODEL_MN_B, MODEL_MP_KB,
#        MODEL_M0_GB; defaults /tmp/largecorpus 4000 100). Results are kept
#        in WORKDIR under names with their parameters and reused by a later
#        run (only the missing steps run; delete them to measure again).
set -e
W=${1:-/tmp/largecorpus}
P=${2:-4000}
K=${3:-100}
KT=${TS_SAMPLE:-$((K / 4))}
KI=${INDEX_SHARDS:-4}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
E=${CORPUSLENS:-corpuslens}
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
command -v bible >/dev/null || { echo "large_corpus_bench: needs Debian's bible-kjv (apt-get install bible-kjv-text)" >&2; exit 1; }
mkdir -p "$W"
cd "$W"
TS=$SHARED/data/tinyshakespeare.txt
[ -f ts.h5 ] || "$E" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$TS" -o ts.h5 >/dev/null
bible Gen1:1-Rev22:21 > kjv-raw.txt
sed -E -e '/^([1-3] )?[A-Za-z ]+ [0-9]+$/d' -e 's/^  [0-9]+ //' -e 's/[()]//g' kjv-raw.txt > kjv.txt
cat "$TS" kjv.txt > large.txt
cat "$TS" kjv-raw.txt > large-raw.txt
echo "texts: TinyShakespeare $(wc -c < "$TS") B, Bible $(wc -c < kjv-raw.txt) B as printed, $(wc -c < kjv.txt) B cleaned; large.txt $(wc -c < large.txt) B (md5 $(md5sum < large.txt | cut -c1-12))"
echo "prepare of the uncleaned text (refused, as it should be):"
"$E" prepare large-raw.txt --len 10 --prompts 10 --vocab-from ts.h5 -o refused.h5 2>&1 | head -2 || true
[ ! -e refused.h5 ] || echo "  (unexpected: refused.h5 exists)"
echo "load before: $(cat /proc/loadavg)"
# 2. growth of N and of the trie nodes (Python; a few minutes)
[ -s growth.txt ] || nice -n 10 "$PY" - "$TS" kjv.txt > growth.txt <<'PEOF'
import sys
L, S = 10, 2048
def stats(t, shard_nodes=False):
    u = sorted(set(t[i:i + L] for i in range(len(t) - L + 1)))  # byte order = token order
    per = []
    for j in range(0, len(u), S):
        nodes, prev = 0, None
        for s in u[j:j + S]:
            if prev is None:
                nodes += L
            else:
                k = 0
                while k < L and prev[k] == s[k]:
                    k += 1
                nodes += L - min(k, L - 1)
            prev = s
        per.append(nodes)
    return len(u), per
ts, kj = open(sys.argv[1]).read(), open(sys.argv[2]).read()
both = ts + kj
for name, t, sizes in (("ts", ts, [len(ts) // 8, len(ts) // 4, len(ts) // 2, len(ts)]),
                       ("kjv", kj, [len(kj) // 8, len(kj) // 4, len(kj) // 2, len(kj)]),
                       ("large", both, [len(ts) + len(kj) // 4, len(ts) + len(kj) // 2, len(both)])):
    for n in sizes:
        N, per = stats(t[:n])
        print(f"{name} {n} {N} {sum(per)}", flush=True)
        if n == len(t) and name in ("ts", "large"):
            print(f"shards-{name} " + " ".join(map(str, per)), flush=True)
PEOF
# 3. prepare (P prompts sampled from each corpus). Every step below keeps its
# results in WORKDIR under a name that says its parameters, and a later run
# reuses them (delete WORKDIR, or the files, to measure again)
for c in ts large; do
    if [ "$c" = ts ]; then src=$TS; else src=large.txt; fi
    [ -s "prep.$c.p$P" ] && [ -f "c.$c.p$P.h5" ] ||
        /usr/bin/time -f "%M %e %U %S" -o "prep.$c.p$P" "$E" prepare "$src" --len 10 --prompts "$P" --seed 1 --vocab-from ts.h5 -o "c.$c.p$P.h5" >/dev/null
done
cat > rt.sh <<'SEOF'
#!/bin/sh
# one rank under GNU time: its peak RSS (KB), wall, user and system seconds.
# The exit status RT_OK (index's 3: stopped after CORPUSLENS_INDEX_STOP_AFTER
# shards) becomes 0, or mpiexec kills the other ranks (and their GNU time,
# before it writes) as soon as one exits with it
/usr/bin/time -f "%M %e %U %S" -o "$RT_OUT.$OMPI_COMM_WORLD_RANK" "$@"
rc=$?
[ "$rc" = "${RT_OK:-0}" ] && exit 0
exit "$rc"
SEOF
chmod +x rt.sh
# 4. the sampled scans, side by side
scan() { # corpus shards tag
    [ ! -s "wall.$3" ] || return 0
    rm -f "rt.$3".* "s.$3.h5"
    s=$(date +%s.%N)
    CORPUSLENS_SCAN_SAMPLE_SHARDS=$2 RT_OUT=rt.$3 mpiexec -n 2 -x RT_OUT -x CORPUSLENS_SCAN_SAMPLE_SHARDS ./rt.sh \
        "$E" scan --model ts.h5 --corpus "c.$1.p$P.h5" -o "s.$3.h5" 2> "log.$3"
    e=$(date +%s.%N)
    echo "$s $e" > "wall.$3"
}
scan ts "$KT" "scan-ts-p$P-k$KT"
scan large "$K" "scan-large-p$P-k$K"
# 5. index: the first shards only (exit 3: stopped, parts kept)
index() { # shards-per-rank tag corpus
    [ ! -s "wall.$2" ] || return 0
    rm -rf "i.$2.h5" "i.$2.h5.parts" "rt.$2".*
    s=$(date +%s.%N)
    CORPUSLENS_INDEX_STOP_AFTER=$1 RT_OUT=rt.$2 RT_OK=3 mpiexec -n 2 -x RT_OUT -x RT_OK -x CORPUSLENS_INDEX_STOP_AFTER \
        ./rt.sh "$E" index --model ts.h5 --corpus "c.$3.p$P.h5" -o "i.$2.h5" 2> "log.$2"
    grep -q "stopped after CORPUSLENS_INDEX_STOP_AFTER" "log.$2" || { echo "index did not stop as asked: log.$2" >&2; exit 1; }
    e=$(date +%s.%N)
    echo "$s $e" > "wall.$2"
    du -sb "i.$2.h5.parts" | cut -f1 > "bytes.$2"
}
index 1 "index-ts-p$P-1" ts
index 1 "index-large-p$P-1" large
index "$KI" "index-large-p$P-$KI" large
echo "load after: $(cat /proc/loadavg)"
"$PY" - "$P" "$K" "$KT" "$KI" <<'PEOF'
import sys, os, re, glob, math, h5py
P, K, KT, KI = map(int, sys.argv[1:5])
env = lambda k, d: float(os.environ.get(k, d))
A, B, T0 = env("MODEL_A_MS", 0.65) * 1e-3, env("MODEL_B_NS", 33) * 1e-9, env("MODEL_T0_S", 3)
MN, MP, M0 = env("MODEL_MN_B", 85), env("MODEL_MP_KB", 118) * 1e3, env("MODEL_M0_GB", 0.27) * 1e9
CORES, NODE_GB = int(env("NODE_CORES", 32)), env("NODE_GB", 256)
S, L, C, LH = 2048, 10, 384, 6
G = {}
shards = {}
for ln in open("growth.txt"):
    f = ln.split()
    if f[0].startswith("shards-"):
        shards[f[0][7:]] = list(map(int, f[1:]))
    else:
        G.setdefault(f[0], []).append((int(f[1]), int(f[2]), int(f[3])))
print("\n1. unique substrings N and trie nodes against corpus size (L = 10, shards of 2048)")
print("corpus  chars       N           N/char  nodes/N")
for k, rows in G.items():
    for n, N, M in rows:
        print(f"{k:<7} {n:<11,} {N:<11,} {N / n:6.3f}  {M / N:5.2f}")
def fit(rows):  # N = c * n^alpha through the last two points
    (n1, N1, _), (n2, N2, _) = rows[-2], rows[-1]
    al = math.log(N2 / N1) / math.log(n2 / n1)
    return al, lambda n: N2 * (n / n2) ** al
def rss(tag):
    r = [[ln.split() for ln in open(f) if ln.strip()] for f in sorted(glob.glob(f"rt.{tag}.*"))]
    if len(r) != 2 or not all(r):
        sys.exit(f"rt.{tag}.*: a rank's GNU time line is missing (delete wall.{tag} to measure it again)")
    r = [x[-1] for x in r]  # the last line: GNU time's
    return [int(x[0]) * 1024 for x in r], [float(x[2]) + float(x[3]) for x in r]
def wall(tag):
    s, e = map(float, open(f"wall.{tag}").read().split())
    return e - s
print("\n2. prepare (one process)")
print("corpus  chars       N           CPU s  wall s  peak RSS MiB  corpus.h5 MB")
prep = {}
for c in ("ts", "large"):
    kb, wl, u, s = open(f"prep.{c}.p{P}").read().split()
    a = h5py.File(f"c.{c}.p{P}.h5", "r")
    N = a["substrings/tokens"].shape[0]
    prep[c] = dict(N=N, cpu=float(u) + float(s), rss=int(kb) * 1024, size=os.path.getsize(f"c.{c}.p{P}.h5"))
    print(f"{c:<7} {G[c][-1][0]:<11,} {N:<11,} {prep[c]['cpu']:6.2f} {float(wl):7.2f} {prep[c]['rss'] / 2**20:13.1f} {prep[c]['size'] / 1e6:13.1f}")
ts_N, lg_N = prep["ts"]["N"], prep["large"]["N"]
assert G["ts"][-1][1] == ts_N and G["large"][-1][1] == lg_N, "Python's N differs from prepare's"
print("\n3. sampled scan, 2 ranks, P = %d prompts sampled from each corpus" % P)
ph_names = ("prompts", "trie forward", "similarity sgemm", "selection/binning", "reduce+write")
sc = {}
for c, tag, k in (("ts", f"scan-ts-p{P}-k{KT}", KT), ("large", f"scan-large-p{P}-k{K}", K)):
    log = open(f"log.{tag}").read()
    ph = {a: float(b) for a, b in re.findall(r"(prompts|trie forward|similarity sgemm|selection/binning|reduce\+write) ([0-9.]+) s", log)}
    at = h5py.File(f"s.{tag}.h5", "r").attrs
    N = int(at["n_substrings"])
    nsh = (N + S - 1) // S
    sampled = [j * nsh // k for j in range(k)] if k < nsh else list(range(nsh))
    nsub = sum(min(S, N - j * S) for j in sampled)
    nodes = sum(shards[c][j] for j in sampled)
    r, cpu = rss(tag)
    sc[c] = dict(N=N, nsh=nsh, k=len(sampled), nsub=nsub, nodes=nodes, ph=ph, rss=max(r), cpu=max(cpu),
                 wall=wall(tag), pairs=int(at["n_prefiltered_pairs"]), stored=int(at["n_stored_matches"]),
                 attr_nodes=int(at["n_trie_nodes"]))
    print(f"{c}: N {N:,}, {len(sampled)} of {nsh} shards ({nsub:,} substrings, {nodes:,} trie nodes; scan's "
          f"n_trie_nodes {sc[c]['attr_nodes']:,}), wall {sc[c]['wall']:.1f} s, CPU per rank max {max(cpu):.1f} s "
          f"(min {min(cpu):.1f}), peak RSS per rank max {max(r) / 2**20:.0f} MiB (min {min(r) / 2**20:.0f}), "
          f"pairs > 0.7 {sc[c]['pairs']:,}, stored {sc[c]['stored']:,}")
    print("   phases (CPU s per rank, max; reduce+write wall): " + ", ".join(f"{n} {ph.get(n, 0):.2f}" for n in ph_names))
ts, lg = sc["ts"], sc["large"]
slot = LH * S * C * 4  # one kept shard's vectors (the prompt side keeps up to 512 MiB of them per rank)
for t in sc.values():
    t["us_node"] = t["ph"]["trie forward"] * 2 / t["nodes"] * 1e6
    t["ms_sub"] = t["ph"]["trie forward"] * 2 / t["nsub"] * 1e3
    t["ns_pair"] = (t["ph"]["similarity sgemm"] + t["ph"]["selection/binning"]) * 2 / t["nsub"] / P * 1e9
    t["fixed"] = t["cpu"] - t["ph"]["trie forward"] - t["ph"]["similarity sgemm"] - t["ph"]["selection/binning"]
    t["keep"] = min((512 << 20) // slot, (t["k"] + 1) // 2) * slot
print("\nper-unit costs (per rank; the 2 ranks share the sampled shards), side by side in this run")
print("corpus  forward us/node  nodes/substr  forward ms/substr  sim+sel ns/(substr x prompt)  pairs>0.7 share  fixed CPU s")
for c, t in sc.items():
    print(f"{c:<7} {t['us_node']:15.1f} {t['nodes'] / t['nsub']:13.2f} {t['ms_sub']:17.3f} {t['ns_pair']:28.1f} "
          f"{t['pairs'] / t['nsub'] / P:16.4f} {t['fixed']:12.1f}")
r_node, r_pair = lg["us_node"] / ts["us_node"], lg["ns_pair"] / ts["ns_pair"]
print(f"large / TinyShakespeare: {r_node:.2f} per trie node, {r_pair:.2f} per (substring x prompt)")
# the model's constants are from a quiet machine: a = 0.65 ms = 3.68 trie nodes x 0.177 ms (TinyShakespeare, whole)
q_node = A / (sum(shards["ts"]) / ts_N) * r_node
q_pair = B * r_pair
print(f"quiet-machine constants for the large corpus (the model's, times those ratios): {q_node * 1e6:.0f} us per trie "
      f"node, b = {q_pair * 1e9:.1f} ns")
lg_nodes = sum(shards["large"]) / lg_N
print(f"\nthe whole large corpus (N {lg_N:,}, {lg_nodes:.2f} trie nodes per substring; TinyShakespeare "
      f"{sum(shards['ts']) / ts_N:.2f}) on 2 ranks, P = {P}:")
meas = lg["fixed"] + lg["us_node"] * 1e-6 * sum(shards["large"]) / 2 + lg["ns_pair"] * 1e-9 * lg_N * P / 2
quiet = T0 + (q_node * lg_nodes + q_pair * P) * lg_N / 2
model = T0 + (A + B * P) * lg_N / 2
print(f"  CPU per rank: extrapolated from this run {meas:,.0f} s; at the quiet constants {quiet:,.0f} s; the cost model "
      f"t0 + (a + b P) N / R {model:,.0f} s (quiet / model {quiet / model:.2f}: its a assumes 3.68 trie nodes per substring)")
keep_l, keep_t = lg["keep"], ts["keep"]
print(f"  peak RSS per rank: large {lg['rss'] / 2**20:.0f} MiB, of which kept shard vectors {keep_l / 2**20:.0f} MiB "
      f"(TinyShakespeare {ts['rss'] / 2**20:.0f}, kept {keep_t / 2**20:.0f}); the model M0 + m_P P + m_N N = "
      f"{(M0 + MP * P + MN * lg_N) / 2**20:.0f} MiB has no term for the kept vectors (up to 512 MiB per rank)")
print("\n4. index of the large corpus, its first shards (2 ranks, float16)")
ix = {}
for tag, k, c in ((f"index-ts-p{P}-1", 1, "ts"), (f"index-large-p{P}-1", 1, "large"), (f"index-large-p{P}-{KI}", KI, "large")):
    r, cpu = rss(tag)
    b = int(open(f"bytes.{tag}").read())
    ix[tag] = dict(cpu=max(cpu), rss=max(r), bytes=b, k=k)
    print(f"{c:<6} {k} shard(s) per rank: CPU per rank max {max(cpu):.1f} s, peak RSS per rank max {max(r) / 2**20:.0f} MiB, "
          f"parts {b / 1e6:.1f} MB, wall {wall(tag):.1f} s")
k1, kk, k1ts = ix[f"index-large-p{P}-1"], ix[f"index-large-p{P}-{KI}"], ix[f"index-ts-p{P}-1"]
m_N = (k1["rss"] - k1ts["rss"]) / (lg_N - ts_N)
print(f"corpus memory per rank (1-shard index runs, large against TinyShakespeare): {m_N:.0f} B per extra substring "
      f"(the model's m_N {MN:.0f} B; the corpus's text grows with it)")
nodes_ix = sum(shards["large"][2:2 * KI])  # shards 0, 1 in the 1-shard run; 0 .. 2 KI - 1 in the other
sub_ix = 2 * (KI - 1) * S
per_node = (kk["cpu"] - k1["cpu"]) * 2 / nodes_ix
bytes_sub = (kk["bytes"] - k1["bytes"]) / sub_ix
print(f"per substring added: {bytes_sub:.0f} B on disk (6 x 384 float16 = {LH * C * 2} B); CPU {per_node * 1e6:.0f} us per "
      f"trie node of those shards ({nodes_ix / sub_ix:.2f} nodes per substring there; the scan's forward "
      f"{lg['us_node']:.0f} us in this run)")
r_ix = per_node / (lg["us_node"] * 1e-6)
print(f"whole large corpus: CPU per rank ~{per_node * sum(shards['large']) / 2 + k1['cpu']:,.0f} s on 2 ranks at this "
      f"run's speed, ~{r_ix * q_node * lg_nodes * lg_N / 2:,.0f} s at the quiet constant (index = {r_ix:.2f} x the scan's "
      f"forward per node in this run; docs/performance.md: 1.035 on the whole of TinyShakespeare); "
      f"index file ~{bytes_sub * lg_N / 1e9:.1f} GB (+9 % with a sketch)")
print("\n5. a corpus 100 x TinyShakespeare (111.5 M characters), P = 20,000, on paper")
n100 = 100 * 1115394
ex = {}
for name in ("ts", "kjv"):
    (n1, N1, _), (n2, N2, _) = G[name][-2], G[name][-1]
    ex[name] = math.log(N2 / N1) / math.log(n2 / n1)
al = ex["ts"]
N_hi = ts_N * 100 ** al  # TinyShakespeare's density and its own growth
N_lo = lg_N * (n100 / G["large"][-1][0]) ** ((ex["ts"] + ex["kjv"]) / 2)  # the large corpus's density
print(f"growth N ~ n^alpha over the last doubling: TinyShakespeare alpha {ex['ts']:.3f}, Bible {ex['kjv']:.3f}; the two "
      f"texts share {(G['ts'][-1][1] + G['kjv'][-1][1] - lg_N) / lg_N * 100:.1f} % of the large corpus's substrings")
print(f"N at 111.5 M characters: {N_hi / 1e6:.1f} M from TinyShakespeare ({ts_N:,} x 100^{al:.3f}); "
      f"{N_lo / 1e6:.1f} M from the large corpus's density; 85.9 M if every substring were new (alpha 1)")
ts_nd = [(math.log2(N), M / N) for n, N, M in G["ts"]]
slope = (ts_nd[-1][1] - ts_nd[-2][1]) / (ts_nd[-1][0] - ts_nd[-2][0])
for tag, N100 in (("TinyShakespeare-like", N_hi), ("large-like", N_lo)):
    nd_lo = max(1.0, lg_nodes + slope * (math.log2(N100) - math.log2(lg_N)))
    print(f"-- N = {N100 / 1e6:.1f} M ({tag}); trie nodes per substring {lg_nodes:.2f} (the large corpus's, an upper "
          f"bound) or ~{nd_lo:.2f} (TinyShakespeare's slope {slope:.2f} per doubling of N)")
    for nd in (lg_nodes, nd_lo):
        fwd = N100 * nd * q_node
        sim = N100 * 20000 * q_pair
        idx = r_ix * fwd
        print(f"   {nd:.2f} nodes: scan {(fwd + sim) / 3600:.1f} core-hours (forward {fwd / 3600:.1f} + similarity "
              f"{sim / 3600:.1f}); index {idx / 3600:.1f} core-hours; cost model (a + b P) N {(A + B * 20000) * N100 / 3600:.1f}")
    mem = M0 + 0.512e9 + MP * 20000 + m_N * N100
    print(f"   memory per rank today: M0 {M0 / 1e9:.2f} + kept vectors 0.51 + m_P P {MP * 20000 / 1e9:.2f} + m_N N "
          f"{m_N * N100 / 1e9:.2f} = {mem / 1e9:.1f} GB (cost model, 85 B and no kept vectors: "
          f"{(M0 + MP * 20000 + MN * N100) / 1e9:.1f} GB)")
    for R in (32, 256, 1024):
        print(f"     corpus part / R, R = {R}: {(mem - m_N * N100 + m_N * N100 / R) / 1e9:.2f} GB per rank")
    ix0 = k1ts["rss"] - m_N * ts_N  # the index's memory without the corpus
    mem_ix = ix0 + m_N * N100
    print(f"   index memory per rank today: {ix0 / 1e9:.2f} + m_N N = {mem_ix / 1e9:.1f} GB; corpus part / R, R = 32: "
          f"{(ix0 + m_N * N100 / 32) / 1e9:.2f} GB")
    fwd_hi = N100 * lg_nodes * q_node
    scan_ch, idx_ch = (fwd_hi + N100 * 20000 * q_pair) / 3600, r_ix * fwd_hi / 3600
    rpn = min(CORES, int(NODE_GB * 0.9e9 // mem))
    rpi = min(CORES, int(NODE_GB * 0.9e9 // mem_ix))
    print(f"   node-hours (nodes of {CORES} cores, {NODE_GB:.0f} GB of which 90 % for ranks, {lg_nodes:.2f} nodes per "
          f"substring): today {rpn} scan ranks and {rpi} index ranks fit per node -> scan {scan_ch / rpn:.2f}, index "
          f"{idx_ch / rpi:.2f}; corpus / R ({CORES} "
          f"ranks per node) -> scan {scan_ch / CORES:.2f}, index {idx_ch / CORES:.2f}")
    print(f"   disk: corpus.h5 ~{prep['large']['size'] / lg_N * N100 / 1e9:.1f} GB, index {bytes_sub * N100 / 1e9:.0f} GB "
          f"(+9 % sketch); prepare ~{prep['large']['cpu'] / lg_N * N100 / 60:.0f} min CPU, peak RSS "
          f"~{prep['large']['rss'] / lg_N * N100 / 1e9:.1f} GB (linear in N from the large corpus)")
PEOF
