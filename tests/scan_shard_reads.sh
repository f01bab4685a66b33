#!/usr/bin/env bash
# A sharded corpus (issue 26 item 1): on R ranks each rank of a scan reads
# only the substring rows of its shards (and the row before each, to check
# the order), and the prompts' rows: never the whole corpus. The scan prints
# what each rank read with CORPUSLENS_CORPUS_STATS=1 (rows handed out by the
# corpus readers; a whole load counts all N). Checked on 2 and 4 ranks: every
# rank under N rows and within its share (ceil(shards / R) shards of S + 1
# rows, plus P prompts), the ranks together at least N. Negative control: a
# corpus file without /substrings/sorted (written before issue 26) is loaded
# whole on every rank, and the same check must fail on it; its scan.h5 holds
# the same datasets as the sharded one's, value for value. A tampered
# /substrings/sorted (two entries swapped, an entry repeated, one out of
# range) is refused on 2 ranks with one message naming it and no output.
# The index on 4 ranks reads as little, and writes the 1-rank file's bytes.
# Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir scan_shard_reads
on() { # on R COMMAND...: the command on R ranks (1: no mpiexec)
    local r=$1
    shift
    if [ "$r" = 1 ]; then timeout -k 5 120 "$E" "$@"; else timeout -k 5 120 mpiexec -n "$r" --oversubscribe "$E" "$@"; fi
}
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 150 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
"$PY" - <<'PYEOF'
import h5py, shutil
shutil.copyfile("c.h5", "old.h5")
with h5py.File("old.h5", "r+") as f:
    if "/substrings/sorted" in f:  # (a corpuslens before issue 26 does not write it)
        del f["/substrings/sorted"]
PYEOF
set +e
S=64
P=150
SCAN=(scan --model m.h5 --prefilter 0.5 --bin-width 0.02 --batch $S)
# check_reads R FILE: each rank's rows under N and within its share; the sum >= N. 0: all hold.
check_reads() {
    "$PY" - "$1" "$2" $S $P <<'PYEOF'
import re, sys
R, path, S, P = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows, N = {}, None
for line in open(path, errors="replace"):
    m = re.search(r"rank (\d+) of (\d+) read (\d+) substring rows of (\d+)", line)
    if m and int(m.group(2)) == R:
        rows[int(m.group(1))] = int(m.group(3))
        N = int(m.group(4))
if sorted(rows) != list(range(R)):
    print(f"  {R} ranks: read lines from ranks {sorted(rows)}")
    sys.exit(1)
shards = (N + S - 1) // S
share = -(-shards // R) * (S + 1) + P
bad = [r for r in range(R) if not (rows[r] < N and rows[r] <= share)]
print(f"  {R} ranks: rows read per rank {[rows[r] for r in range(R)]} (N = {N}, share bound {share})")
sys.exit(1 if bad or sum(rows.values()) < N else 0)
PYEOF
}
for n in 2 4; do
    CORPUSLENS_CORPUS_STATS=1 on $n "${SCAN[@]}" --corpus c.h5 -o s$n.h5 >out$n.txt 2>&1 || { bad "$n ranks: the scan failed"; cat out$n.txt; }
    if check_reads $n out$n.txt; then ok "$n ranks: each rank read only its shards' rows and the prompts'"
    else bad "$n ranks: a rank read more than its shards (or the whole corpus)"; fi
done
CORPUSLENS_CORPUS_STATS=1 on 2 "${SCAN[@]}" --corpus old.h5 -o old2.h5 >old2.txt 2>&1 || { bad "old file: the scan failed"; cat old2.txt; }
if check_reads 2 old2.txt; then bad "negative control: a whole load passed the check"
else ok "negative control: the whole load (file without /substrings/sorted) fails the check"; fi
# the sharded scan's file = the whole load's (but for the corpus file's name and hash, and the wall time)
"$PY" - s2.h5 old2.h5 <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
skip = {"wall_seconds", "corpus_h5_file", "corpus_h5_sha256"}
def items(f):
    out = {"/": f}
    f.visititems(lambda n, o: out.__setitem__(n, o))
    return out
ia, ib = items(a), items(b)
bad = [] if sorted(ia) == sorted(ib) else ["object names"]
for n, o in ia.items():
    if n not in ib: continue
    if isinstance(o, h5py.Dataset) and not (o.dtype == ib[n].dtype and np.array_equal(o[()], ib[n][()])):
        bad.append(n)
    ka = sorted(k for k in o.attrs if k not in skip)
    if ka != sorted(k for k in ib[n].attrs if k not in skip) or any(not np.array_equal(o.attrs[k], ib[n].attrs[k]) for k in ka):
        bad.append(n + " attributes")
print("  differ:", ", ".join(bad) if bad else "nothing")
sys.exit(1 if bad else 0)
PYEOF
[ $? = 0 ] && ok "sharded scan = whole-load scan, value for value" || bad "sharded scan differs from the whole-load scan"
# the index: the same per-rank reads; 1 and 4 ranks write the same bytes
for n in 1 4; do
    CORPUSLENS_CORPUS_STATS=1 on $n index --model m.h5 --corpus c.h5 --batch $S -o i$n.h5 >iout$n.txt 2>&1 ||
        { bad "index on $n ranks failed"; cat iout$n.txt; }
done
if check_reads 4 iout4.txt; then ok "index, 4 ranks: each rank read only its shards' rows and the prompts'"
else bad "index, 4 ranks: a rank read more than its shards"; fi
cmp -s i1.h5 i4.h5 && ok "index: 4 ranks' file = 1 rank's, byte for byte" || bad "index: 4 ranks' file differs from 1 rank's"
# tampered orders
for how in swap repeat range; do
    "$PY" - "$how" <<'PYEOF'
import h5py, shutil, sys
how = sys.argv[1]
shutil.copyfile("c.h5", "t.h5")
with h5py.File("t.h5", "r+") as f:
    a = f["/substrings/sorted"][()]
    i = len(a) // 2
    if how == "swap": a[i], a[i + 1] = a[i + 1], a[i]
    elif how == "repeat": a[i] = a[i + 1]
    else: a[i] = len(a)
    del f["/substrings/sorted"]
    f["/substrings/sorted"] = a
PYEOF
    rm -f t.out.h5
    on 2 "${SCAN[@]}" --corpus t.h5 -o t.out.h5 >t.txt 2>&1
    rc=$?
    n=$(grep -c "^corpuslens" t.txt)
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "/substrings/sorted" t.txt && [ ! -e t.out.h5 ] &&
        ! grep -q "HDF5-DIAG\|Sanitizer" t.txt; then
        ok "sorted order $how: refused ($(grep -m1 'substrings/sorted' t.txt | cut -c1-110))"
    else bad "sorted order $how: exit $rc, $n lines"; cat t.txt; fi
done
[ $fails = 0 ] && echo "all passed" || echo "$fails failed"
[ $fails = 0 ]
