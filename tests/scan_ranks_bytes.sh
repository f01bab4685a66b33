#!/usr/bin/env bash
# The scan file does not depend on the rank count: 2, 4 and 8 ranks
# (oversubscribed) write byte-identical scan.h5 files (compared with cmp after
# setting the one wall-time attribute, wall_seconds, to 0 in copies: h5py
# rewrites the scalar in place). One rank runs without MPI (mpiexec -n 1
# included) and writes through HDF5's default driver, which places the chunks
# otherwise: its file holds the same datasets and attributes, value for value. Every rank writes its share through parallel
# HDF5; CORPUSLENS_SCAN_IO_SLICE / _ROUND shrink the reduce slices and match
# rounds so that this small scan crosses many of them (and rounds where some
# ranks own no prompt). Also: the same bytes with the default slices (1 rank),
# the datasets equal to a plain numpy reading of the 1-rank file's own parts
# (index consistent with the match arrays, several chunks of matches: HDF5
# places the chunks of a collective write rank by rank, so the slabs must be
# in rank order), and a negative control (another --match-cap gives other
# bytes: cmp can fail).
# Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir scan_ranks_bytes
zero() { cp "$1" "$2" && "$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs.modify('wall_seconds',0.0)" "$2"; }
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 150 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
set +e
SCAN=(scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.02 --batch 64 --match-cap 0)
for n in 1 2 4 8; do
    CORPUSLENS_SCAN_IO_SLICE=3000 CORPUSLENS_SCAN_IO_ROUND=7 timeout -k 5 300 mpiexec -n $n --oversubscribe \
        "$E" "${SCAN[@]}" -o s$n.h5 >out$n.txt 2>&1 || { bad "$n ranks: the scan failed"; cat out$n.txt; }
    zero s$n.h5 z$n.h5 || bad "$n ranks: no file"
done
for n in 4 8; do
    if cmp -s z2.h5 z$n.h5; then ok "$n ranks: byte-identical to 2 ranks ($(stat -c %s z2.h5) bytes)"
    else bad "$n ranks: the file differs from 2 ranks'"; fi
done
# every dataset and attribute of the one-process file equals the 2-rank one's
same_content() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
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
    if sorted(o.attrs) != sorted(ib[n].attrs) or any(not np.array_equal(o.attrs[k], ib[n].attrs[k]) for k in o.attrs):
        bad.append(n + " attributes")
print(", ".join(bad))
sys.exit(1 if bad else 0)
PYEOF
}
if diff=$(same_content z1.h5 z2.h5); then ok "1 rank (no MPI): every dataset and attribute equal to 2 ranks'"
else bad "1 rank (no MPI): differs from 2 ranks' in: $diff"; fi
timeout -k 5 300 mpiexec -n 1 "$E" "${SCAN[@]}" -o d1.h5 >outd.txt 2>&1 || bad "default slices: the scan failed"
zero d1.h5 zd.h5
cmp -s z1.h5 zd.h5 && ok "default slices and rounds: the same bytes" || bad "the slice/round knobs changed the file"
timeout -k 5 300 mpiexec -n 2 --oversubscribe "$E" "${SCAN[@]}" --match-cap 1000 -o n2.h5 >outn.txt 2>&1 || bad "negative control: the scan failed"
zero n2.h5 zn.h5
if [ -f z2.h5 ] && [ -f zn.h5 ] && ! cmp -s z2.h5 zn.h5; then ok "negative control: --match-cap 1000 gives other bytes"
else bad "negative control: --match-cap 1000 gave the same bytes, or no file"; fi
if [ -f zn.h5 ] && ! same_content z1.h5 zn.h5 >/dev/null; then ok "negative control: and other datasets"
else bad "negative control: the dataset comparison missed --match-cap 1000"; fi
"$PY" - z1.h5 <<'PYEOF' || fails=$((fails + 1))
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
idx, sub, sim = f["matches/index"][()], f["matches/substring"][()], f["matches/similarity"][()]
P, Lh, _ = idx.shape
at, bad = 0, 0
for p in range(P):
    for b in range(Lh):
        s, n = idx[p, b]
        bad += s != at or (f.attrs["match_cap"] > 0 and n > f.attrs["match_cap"])
        seg = list(zip(-sim[s:s + n], sub[s:s + n]))
        bad += seg != sorted(seg)
        at += n
bad += at != len(sub) or at != f.attrs["n_stored_matches"] or "ranks" in f.attrs
# several chunks (65,536) of matches, so that their placement in the file is tested
bad += at < 3 * 65536 or f["matches/substring"].chunks != (65536,)
nm = f["freq/n_matches"][()]
bad += (nm.sum(axis=2) < idx[:, :, 1]).any()  # stored matches are a subset of the binned pairs
print(("ok    " if not bad else "FAIL  ") + f"the file's own structure: {P} prompts, {at} matches in canonical order, index consecutive")
sys.exit(1 if bad else 0)
PYEOF
echo "$fails failure(s)"
[ "$fails" = 0 ]
