#!/bin/sh
# Peak RSS per rank of a scan against the rank count, before and after the
# sharded corpus (issue 26 item 1): a figure generator, not a test. The whole
# of TinyShakespeare (L = 10, N = 858,923), P prompts, the lecture model from
# ../shared, the paper's settings; 1, 2, 4, 8 ranks (oversubscribed: memory,
# not time). Each run stops after its first shard per rank
# (CORPUSLENS_SCAN_STOP_AFTER=1: every buffer is allocated and the corpus part
# read by then) with no kept shard vectors (CORPUSLENS_SCAN_KEEP_SHARDS=0:
# the 512 MiB shortcut would hide the corpus term), so the figure is
# M0 + m_P P + the corpus's share. Each rank runs under GNU time (the
# stopped run exits 3: expected). With neither OLD nor NEW set, the table of
# the runs already in WORKDIR.
# OLD names a corpuslens built before the change (it reads the same corpus
# file; the extra /substrings/sorted is ignored by it); NEW this one.
# WHAT=explain: `explain` of 10 texts instead (issue 26 item 1, what was
# left): the whole of TinyShakespeare (L = 10) indexed with a small random
# model (n_layer 2, n_embd 32: the index is cheap to build and its mapped rows
# are a small term; the counts, 37 B per substring, do not depend on the
# model), the index built once by NEW; the per-rank figures as above.
# usage: tests/bench/shard_rss_bench.sh [WORKDIR] [PROMPTS]
#        (env NEW, OLD, SHARED, PYTHON, WHAT; defaults /tmp/shardrss 1000 scan)
set -e
W=${1:-/tmp/shardrss}
P=${2:-1000}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
NEW=${NEW-corpuslens}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$W"
cd "$W"
[ -f ts.h5 ] || "${NEW:-corpuslens}" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" -o ts.h5 >/dev/null
[ -f cfull.h5 ] || "${NEW:-corpuslens}" prepare "$SHARED/data/tinyshakespeare.txt" --len 10 --prompts "$P" --seed 1 --vocab-from ts.h5 -o cfull.h5 >/dev/null
WHAT=${WHAT:-scan}
if [ "$WHAT" = explain ]; then
    [ -f small.h5 ] || "${NEW:-corpuslens}" init --config n_layer=2,n_embd=32,n_head=4,block_size=32 --vocab-from "$SHARED/data/tinyshakespeare.txt" --seed 1 -o small.h5 >/dev/null
    [ -f ismall.h5 ] || mpiexec -n 2 "${NEW:-corpuslens}" index --model small.h5 --corpus cfull.h5 -o ismall.h5 >/dev/null 2>&1
    printf '%s\n' "First Citizen:" "Before we proceed" "any further, hear" "me speak." "All:" "Speak, speak." \
        "You are all resolved" "rather to die" "than to famish?" "Resolved. resolved." > texts.txt
fi
cat > rt.sh <<'SEOF'
#!/bin/sh
# one rank under GNU time; the stopped run's exit 3 made 0 (mpiexec would
# kill the other ranks before their time is written)
exec /usr/bin/time -f "%M %e %U %S" -o "$RT_OUT.$OMPI_COMM_WORLD_RANK" sh -c '"$@"; s=$?; [ $s = 3 ] && s=0; exit $s' sh "$@"
SEOF
chmod +x rt.sh
echo "load before: $(cat /proc/loadavg)"
for which in OLD NEW; do
    eval "E=\${$which:-}"
    [ -n "$E" ] || continue
    for r in 1 2 4 8; do
        t=$which.$r
        rm -rf "run.$t" && mkdir "run.$t"
        if [ "$WHAT" = explain ]; then
            set -- explain --index ../ismall.h5 --corpus ../cfull.h5 --model ../small.h5 --prompt-file ../texts.txt \
                --thresholds 0.9,0.95 --weights 1,1 --quiet -o e.h5
        else
            set -- scan --model ../ts.h5 --corpus ../cfull.h5 -o s.h5
        fi
        (cd "run.$t" && RT_OUT=../rt.$t CORPUSLENS_SCAN_STOP_AFTER=1 CORPUSLENS_SCAN_KEEP_SHARDS=0 CORPUSLENS_CORPUS_STATS=1 \
            mpiexec -n "$r" --oversubscribe -x RT_OUT -x CORPUSLENS_SCAN_STOP_AFTER -x CORPUSLENS_SCAN_KEEP_SHARDS \
            -x CORPUSLENS_CORPUS_STATS ../rt.sh "$E" "$@" 2> ../log.$t >/dev/null) ||
            { echo "$t failed"; tail -3 "log.$t"; }
        [ "$WHAT" != explain ] || [ ! -f "run.$t/e.h5" ] || cp "run.$t/e.h5" "e.$t.h5"
        rm -rf "run.$t"
    done
done
echo "load after: $(cat /proc/loadavg)"
${PYTHON:-/usr/bin/python3} - <<'PEOF'
import glob, re
import os, filecmp
print("| ranks | before: peak RSS per rank, max / min | after: max / min | after: rows read per rank (of N) | after: next-token entries read per rank (of nnz) | after: chunks read per rank (stored MB) |")
print("|---|---|---|---|---|---|")
for r in (1, 2, 4, 8):
    cells = []
    for w in ("OLD", "NEW"):
        kb = [int(open(f).read().splitlines()[-1].split()[0]) for f in glob.glob(f"rt.{w}.{r}.*")]
        cells.append(f"{max(kb) / 1024:.0f} / {min(kb) / 1024:.0f} MiB" if len(kb) == r else "n/a")
    rows, ents, chs = [], [], []
    try:
        for line in open(f"log.NEW.{r}"):
            m = re.search(r"read (\d+) substring rows of (\d+), (\d+) next-token entries of (\d+)", line)
            if m: rows.append(int(m.group(1))); n = int(m.group(2)); ents.append(int(m.group(3))); nnz = int(m.group(4))
            m = re.search(r"; (\d+) chunks, (\d+) stored bytes", line)
            if m: chs.append((int(m.group(1)), int(m.group(2))))
        rc = f"{min(rows):,}..{max(rows):,} of {n:,}" if rows else "n/a"
        ec = f"{min(ents):,}..{max(ents):,} of {nnz:,}" if ents else "n/a"
        cc = f"{min(chs)[0]:,}..{max(chs)[0]:,} ({min(b for _, b in chs) / 1e6:.1f}..{max(b for _, b in chs) / 1e6:.1f})" if chs else "n/a"
    except OSError:
        rc = ec = cc = "n/a"
    print(f"| {r} | {cells[0]} | {cells[1]} | {rc} | {ec} | {cc} |")
# explain: every run's explain.h5 the same bytes (1 rank OLD the reference)
outs = sorted(f for f in os.listdir(".") if f.startswith("e.") and f.endswith(".h5"))
if outs:
    same = all(filecmp.cmp(outs[0], f, shallow=False) for f in outs)
    print(f"explain.h5 of {len(outs)} runs ({', '.join(outs)}): {'identical' if same else 'DIFFER'}")
PEOF
