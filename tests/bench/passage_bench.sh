#!/bin/sh
# explain --passage against its windows explained one by one (single process,
# warm page cache). A figure generator, not a test: it prints numbers.
#   - the passage together: `explain --passage P --quiet`, R runs: the wall of the
#     command and explain's own time (the library call, from its stderr line);
#   - its windows alone: W windows spread over the passage (all of them with
#     W = the passage's length), each `explain WINDOW`: explain's own time per
#     window (p50, p90, max) and their sum scaled to every window, i.e. the
#     cost of explaining the passage one window at a time, warm;
#   - the machine's load average before and after.
# usage: tests/bench/passage_bench.sh BIN INDEX.h5 CORPUS.h5 MODEL.h5 TEXT.txt [OFFSET] [CHARS] [R] [W]
# The passage: CHARS (default 200) characters of TEXT.txt from character OFFSET
# (default 500000), or $PASSAGE when set. On the full TinyShakespeare float16
# index with its sketch (README, "Explaining any text"). $ARGS: more explain options.
set -e
BIN=${1:?usage: passage_bench.sh BIN INDEX.h5 CORPUS.h5 MODEL.h5 TEXT.txt [OFFSET] [CHARS] [R] [W]}
IX=${2:?index}; CP=${3:?corpus}; MD=${4:?model}; TXT=${5:?text}
OFF=${6:-500000}; CH=${7:-200}; R=${8:-3}; W=${9:-20}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ -n "$PASSAGE" ]; then printf '%s' "$PASSAGE" > "$T/p.txt"
else "$PY" -c "import sys; t=open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[4], 'w', encoding='utf-8').write(t[int(sys.argv[2]):int(sys.argv[2])+int(sys.argv[3])])" "$TXT" "$OFF" "$CH" "$T/p.txt"
fi
L=$("$PY" -c "import h5py,sys; print(int(h5py.File(sys.argv[1]).attrs['L']))" "$IX")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
B="--index $IX --corpus $CP --model $MD $ARGS" # ARGS: more explain options (e.g. --thresholds)
"$BIN" explain $B --quiet --passage-file "$T/p.txt" > /dev/null 2>&1 # warm-up (page cache)
i=0
while [ $i -lt "$R" ]; do
    /usr/bin/time -f "%e %U %S" -o "$T/time" "$BIN" explain $B --quiet --passage-file "$T/p.txt" -o "$T/p.h5" \
        > "$T/p.out" 2> "$T/p.err"
    echo "$(cat "$T/time") $(grep 'explain --passage' "$T/p.err" | sed 's/.*total \([0-9.]*\) s (rank 0 CPU \([0-9.]*\) s).*/\1 \2/')" >> "$T/together"
    i=$((i + 1))
done
grep 'explain --passage' "$T/p.err" > "$T/line"
# the windows alone
"$PY" - "$T/p.txt" "$L" "$W" > "$T/wins" <<'PEOF'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
L, W = int(sys.argv[2]), int(sys.argv[3])
n = len(t)
idx = sorted({round(k * (n - 1) / max(W - 1, 1)) for k in range(W)}) if W < n else list(range(n))
for i in idx:
    w = t[max(0, i + 1 - L):i + 1]
    print(i, w.encode("unicode_escape").decode())
PEOF
while read -r i w; do
    txt=$(printf '%b' "$w")
    "$BIN" explain $B --quiet -o "$T/a.h5" -- "$txt" > /dev/null 2> "$T/a.err" || { cat "$T/a.err"; exit 1; }
    echo "$i $(grep '^corpuslens explain:' "$T/a.err" | sed 's/.*explain total \([0-9.]*\) s.*(explain \([0-9.]*\) s).*/\1 \2/')" >> "$T/alone"
done < "$T/wins"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$T/together" "$T/alone" "$T/p.txt" "$L" "$T/line" <<'PEOF'
import statistics, sys
tog = [list(map(float, l.split())) for l in open(sys.argv[1])]
alone = [(int(l.split()[0]), float(l.split()[1]), float(l.split()[2])) for l in open(sys.argv[2])]
n, L = len(open(sys.argv[3], encoding="utf-8").read()), int(sys.argv[4])
print(f"passage: {n} characters, windows of at most {L}")
w = sorted(x[0] for x in tog); e = sorted(x[3] for x in tog); ec = sorted(x[4] for x in tog)
cpu = sorted(x[1] + x[2] for x in tog)
print(f"together, {len(tog)} runs: explain itself wall best {e[0]:.2f} s, median {statistics.median(e):.2f} s, "
      f"CPU best {ec[0]:.2f} s, median {statistics.median(ec):.2f} s; whole command wall median "
      f"{statistics.median(w):.2f} s, CPU (user + sys) median {statistics.median(cpu):.2f} s")
print("  " + open(sys.argv[5]).read().strip())
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
for name, col, tot in (("wall", 1, statistics.median(e)), ("CPU", 2, statistics.median(ec))):
    t = sorted(x[col] for x in alone)
    full = sorted(x[col] for x in alone if x[0] >= L - 1)
    print(f"alone, {len(alone)} windows, explain itself, {name}: p50 {statistics.median(t) * 1000:.0f} ms, "
          f"p90 {q(t, 0.9) * 1000:.0f} ms, max {t[-1] * 1000:.0f} ms (full-length windows: p50 "
          f"{statistics.median(full) * 1000:.0f} ms)")
    est = statistics.mean(t) * n
    print(f"  one by one, all {n} windows ({name}): {est:.1f} s "
          f"({'measured' if len(alone) == n else 'mean of the sample x ' + str(n)}); together / one by one = "
          f"{tot / est:.3f} ({est / tot:.1f}x less)")
PEOF
