#!/bin/sh
# Side by side: one new prompt through `explain` (single process, warm page
# cache) with two corpuslens binaries, run alternately N times each, so both
# see the same machine load. Prints, per binary, the best and the median of
# CPU time (user + sys: what a quiet machine's wall would be) and of wall
# time, the ratios, the last timing line of each, and checks that both write
# byte-identical explain.h5. A figure generator, not a test.
# usage: tests/bench/explain_load_bench.sh BASE_BIN NEW_BIN [WORKDIR] [N] [TEXT]
# WORKDIR needs ixs.h5, c1000.h5, ts.h5 (tests/bench/explain_bench.sh, step 7);
# they are only read.
set -e
A=${1:?usage: explain_load_bench.sh BASE_BIN NEW_BIN [WORKDIR] [N] [TEXT]}
B=${2:?usage: explain_load_bench.sh BASE_BIN NEW_BIN [WORKDIR] [N] [TEXT]}
W=${3:-/tmp/explainbench}
N=${4:-7}
TEXT=${5:-Thou art a wick}
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for f in ixs.h5 c1000.h5 ts.h5; do [ -r "$W/$f" ] || { echo "missing $W/$f" >&2; exit 2; }; done
run() { # label bin i
    /usr/bin/time -f "%U %S %e" -o "$T/time" "$2" explain --index "$W/ixs.h5" --corpus "$W/c1000.h5" \
        --model "$W/ts.h5" "$TEXT" -o "$T/$1.h5" > /dev/null 2> "$T/$1.log"
    echo "$1 $(cat "$T/time")" >> "$T/all"
    tail -2 "$T/$1.log" | head -1 > "$T/$1.line"
}
run base "$A"; run new "$B" # warm-up (page cache), not counted
: > "$T/all"
i=0
while [ $i -lt "$N" ]; do
    run base "$A"; run new "$B"
    i=$((i + 1))
done
cmp -s "$T/base.h5" "$T/new.h5" && same="byte-identical" || same="DIFFERENT"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
"$PY" - "$T/all" "$A" "$B" "$N" <<'PEOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
f = {}
for lab, u, s, e in rows:
    f.setdefault(lab, []).append((float(u) + float(s), float(e)))
name = {"base": sys.argv[2], "new": sys.argv[3]}
res = {}
for lab in ("base", "new"):
    cpu = [c for c, _ in f[lab]]; wall = [w for _, w in f[lab]]
    res[lab] = (min(cpu), statistics.median(cpu), min(wall), statistics.median(wall))
    print(f"{lab} ({name[lab]}), {sys.argv[4]} runs: CPU best {res[lab][0]:.2f} s, median {res[lab][1]:.2f} s; "
          f"wall best {res[lab][2]:.2f} s, median {res[lab][3]:.2f} s")
b, n = res["base"], res["new"]
print(f"base / new: CPU best {b[0] / n[0]:.2f}x, median {b[1] / n[1]:.2f}x; wall best {b[2] / n[2]:.2f}x, "
      f"median {b[3] / n[3]:.2f}x")
PEOF
echo "base: $(cat "$T/base.line")"
echo "new:  $(cat "$T/new.line")"
echo "explain.h5 of base and new: $same"
[ "$same" = byte-identical ]
