#!/bin/sh
# Index / explain benchmark (a figure generator, not a test), 2 ranks, the
# shared lecture model on the full TinyShakespeare corpus (L = 10):
#   1. `index` of all 858,923 substrings (float16): wall time, size, trie
#      forward time per rank;
#   2. explain of one new prompt (not in the corpus): cold (the index evicted
#      from the page cache with posix_fadvise DONTNEED) and warm;
#   3. explain of 1, 10, 100, 1,000 paper prompts (timings; mean H);
#   4. held-out: prepare --holdout-fraction 0.1, index of the training part,
#      explain --eval-text 1000 (mean H beside the baselines);
#   5. the batch scan of the same 1,000 paper prompts with --index-out
#      (float16): scan time against explain's (crossover), and float16 against
#      the scan's float32 bins: (prompt, block) whose counts change, largest
#      change in H.
#   6. on a budget, one forward pass of a smaller corpus: the first 111,540
#      characters of TinyShakespeare (text the model trained on) + the
#      lecture's held-out last 111,540 characters, prepared with
#      --holdout-fraction 0.5 (substrings, counts and 1,000 prompts from the
#      first part only). One scan of the 1,000 prompts with --index-out gives
#      the float32 bins and the float16 index; then explain of 1..1,000 of
#      the prompts (crossover against the scan), float16 against the scan's
#      float32 bins, 1,000 held-out windows against the 1,000 in-corpus
#      prompts, and tune / tune --soft on the scan applied to the windows
#      (does the soft kernel beat the paper's thresholds on held-out text?).
#   7. the pruning sketch against an EXISTING index (nothing is rebuilt):
#      ix.h5 is copied to ixs.h5 once and `index --add-sketch` adds the sketch
#      to the copy (time, size); then one new prompt, single process (no
#      mpirun): cold (ixs.h5 evicted) and warm, with the sketch and without
#      (CORPUSLENS_SKETCH=0: every row, same mapped kernel) side by side, the
#      fraction of rows computed per block, the ratio; explain.h5 of the
#      sketch and of the full pass compared byte for byte for the new prompt
#      and 7 paper prompts (8 texts: the most the sketch path takes).
#      The whole command of two builds side by side (CPU and wall, best of N
#      alternated): tests/bench/explain_load_bench.sh BASE_BIN NEW_BIN WORKDIR.
# Steps run in this order and each prints its figures, so a slice is usable
# if the run is stopped. usage: tests/bench/explain_bench.sh [WORKDIR] [STEPS]
# (STEPS: e.g. "12345", "7" for the sketch on an existing WORKDIR/ix.h5; env
# CORPUSLENS, SHARED). Everything runs under nice.
set -e
W=${1:-/tmp/explainbench}
STEPS=${2:-12345}
SHARED=${SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/../shared}
E=${CORPUSLENS:-corpuslens}
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
MPI="nice mpirun -n 2 -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS"
mkdir -p "$W"
cd "$W"
[ -f ts.h5 ] || "$E" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" -o ts.h5
head -1000 "$SHARED/data/paper-prompts-L10.txt" > p1000.txt
[ -f c1000.h5 ] || "$E" prepare "$SHARED/data/tinyshakespeare.txt" --len 10 --prompt-file p1000.txt --vocab-from ts.h5 -o c1000.h5
# the texts of the 1,000 paper prompts, C-escaped, one per line
"$PY" - <<'PEOF'
import h5py
t = [x.decode() for x in h5py.File("c1000.h5", "r")["/prompts/text"][()]]
esc = lambda s: s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
for n in (1, 10, 100, 1000):
    open(f"t{n}.txt", "w").write("".join(esc(s) + "\n" for s in t[:n]))
PEOF
now() { date +%s.%N; }
dt() { "$PY" -c "print(f'{$2 - $1:.2f}')"; }
evict() { "$PY" -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$1"; }
echo "machine: $(nproc) cores, load $(cat /proc/loadavg) (shared with other users: timings are noisy)"

case $STEPS in *1*)
  echo "== 1. index of the full corpus (float16, 2 ranks)"
  t0=$(now); $MPI "$E" index --model ts.h5 --corpus c1000.h5 -o ix.h5 2> index.log; t1=$(now)
  grep -v '^corpuslens index: [0-9]*/' index.log || true
  echo "index: wall $(dt $t0 $t1) s, $(stat -c %s ix.h5) bytes"
;; esac

case $STEPS in *2*)
  echo "== 2. one new prompt (not in the corpus), 2 ranks"
  NEW="Thou art a wick"
  evict ix.h5
  t0=$(now); $MPI "$E" explain --index ix.h5 --corpus c1000.h5 --model ts.h5 --quiet "$NEW" 2> cold.log >/dev/null; t1=$(now)
  echo "cold: wall $(dt $t0 $t1) s ($(tail -1 cold.log))"
  for i in 1 2 3; do
    t0=$(now); $MPI "$E" explain --index ix.h5 --corpus c1000.h5 --model ts.h5 --quiet "$NEW" 2> warm.log >/dev/null; t1=$(now)
    echo "warm $i: wall $(dt $t0 $t1) s ($(tail -1 warm.log))"
  done
  t0=$(now); "$E" explain --index ix.h5 --corpus c1000.h5 --model ts.h5 --quiet "$NEW" 2> warm1.log >/dev/null; t1=$(now)
  echo "warm, 1 process (no mpirun): wall $(dt $t0 $t1) s ($(tail -1 warm1.log))"
  "$E" explain --index ix.h5 --corpus c1000.h5 --model ts.h5 --show 4 "$NEW" 2>/dev/null | head -40
;; esac

case $STEPS in *3*)
  echo "== 3. paper prompts through explain (2 ranks, warm)"
  for n in 1 10 100 1000; do
    t0=$(now); $MPI "$E" explain --index ix.h5 --corpus c1000.h5 --model ts.h5 --prompt-file t$n.txt --quiet --soft \
        -o e$n.h5 > e$n.out 2> e$n.log; t1=$(now)
    echo "P = $n: wall $(dt $t0 $t1) s ($(tail -1 e$n.log))"
  done
  cat e1000.out
;; esac

case $STEPS in *4*)
  echo "== 4. held-out: index of the first 90 %, 1,000 windows of the last 10 %"
  [ -f ctrain.h5 ] || "$E" prepare "$SHARED/data/tinyshakespeare.txt" --len 10 --prompts 1000 --seed 1337 --vocab-from ts.h5 \
      --holdout-fraction 0.1 -o ctrain.h5
  t0=$(now); $MPI "$E" index --model ts.h5 --corpus ctrain.h5 -o ixtrain.h5 2> itrain.log; t1=$(now)
  grep -v '^corpuslens index: [0-9]*/' itrain.log || true
  echo "training-part index: wall $(dt $t0 $t1) s, $(stat -c %s ixtrain.h5) bytes"
  t0=$(now); $MPI "$E" explain --index ixtrain.h5 --corpus ctrain.h5 --model ts.h5 --eval-text 1000 --seed 1 --soft \
      -o heldout.h5 > heldout.out 2> heldout.log; t1=$(now)
  cat heldout.out; echo "held-out windows: wall $(dt $t0 $t1) s"
  # in-corpus prompts of the training part, same index
  "$PY" - <<'PEOF'
import h5py
f = h5py.File("ctrain.h5", "r")
t = [x.decode() for x in f["/prompts/text"][()]]
esc = lambda s: s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
open("ttrain.txt", "w").write("".join(esc(s) + "\n" for s in t))
PEOF
  $MPI "$E" explain --index ixtrain.h5 --corpus ctrain.h5 --model ts.h5 --prompt-file ttrain.txt --quiet --soft \
      -o incorpus.h5 > incorpus.out 2> incorpus.log
  echo "1,000 in-corpus prompts (sampled from the training part, seed 1337), same index:"; cat incorpus.out
;; esac

case $STEPS in *5*)
  echo "== 5. batch scan of the same 1,000 paper prompts (2 ranks) with --index-out (float16)"
  t0=$(now); $MPI "$E" scan --model ts.h5 --corpus c1000.h5 -o scan1000.h5 --index-out ixscan.h5 2> scan.log; t1=$(now)
  grep -v '^corpuslens scan: [0-9]*/' scan.log || true
  echo "scan + index-out: wall $(dt $t0 $t1) s"
  cmp ixscan.h5 ix.h5 && echo "scan --index-out wrote the same bytes as index"
  "$E" reduce scan1000.h5 -o rep1000 | tail -2
  "$PY" - <<'PEOF'
import h5py, numpy as np
s = h5py.File("scan1000.h5", "r"); r = h5py.File("rep1000/report.h5", "r"); e = h5py.File("e1000.h5", "r")
thr = [0.95, 0.94, 0.85, 0.76, 0.81, 0.89]
lower = s["/freq/bin_lower"][()]
cnt = s["/freq/counts"]
ec = e["/blocks/counts"][()]
diff = 0
for p in range(ec.shape[0]):
    c = cnt[p].astype(np.int64)
    for b in range(6):
        k = int(np.argmin(np.abs(lower - thr[b])))
        diff += not np.array_equal(c[b, k:].sum(axis=0), ec[p, b])
dh = np.abs(r["/hellinger"][()] - e["/hellinger"][()])
print(f"float16 index vs the scan's float32 bins, 1,000 paper prompts x 6 blocks: {diff} (prompt, block) with other "
      f"counts; largest change in H {dh.max():.3g}, mean {dh.mean():.3g}; mean H explain {e['/hellinger'][()].mean():.4f}, "
      f"reduce {r['/hellinger'][()].mean():.4f}")
PEOF
;; esac
case $STEPS in *6*)
  echo "== 6. index of the first 111,540 characters; held-out = the lecture's last 111,540 (2 ranks)"
  "$PY" - "$SHARED/data/tinyshakespeare.txt" <<'PEOF3'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
held = t[int(0.9 * len(t)):]
open("split.txt", "w", encoding="utf-8").write(t[:len(held)] + held)
PEOF3
  [ -f csplit.h5 ] || "$E" prepare split.txt --len 10 --prompts 1000 --seed 1337 --vocab-from ts.h5 --holdout-fraction 0.5 \
      -o csplit.h5
  t0=$(now); $MPI "$E" scan --model ts.h5 --corpus csplit.h5 -o scansplit.h5 --index-out ixsplit.h5 2> ssplit.log; t1=$(now)
  grep -v '^corpuslens scan: [0-9]*/' ssplit.log || true
  echo "scan of 1,000 prompts + --index-out: wall $(dt $t0 $t1) s; index $(stat -c %s ixsplit.h5) bytes"
  "$E" reduce scansplit.h5 -o repsplit | head -1
  "$PY" - <<'PEOF3'
import h5py
t = [x.decode() for x in h5py.File("csplit.h5", "r")["/prompts/text"][()]]
esc = lambda s: s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
for n in (1, 10, 100, 1000):
    open(f"u{n}.txt", "w").write("".join(esc(s) + "\n" for s in t[:n]))
PEOF3
  for n in 1 10 100 1000; do
    t0=$(now); $MPI "$E" explain --index ixsplit.h5 --corpus csplit.h5 --model ts.h5 --prompt-file u$n.txt --quiet \
        -o f$n.h5 > f$n.out 2> f$n.log; t1=$(now)
    echo "explain P = $n: wall $(dt $t0 $t1) s ($(tail -1 f$n.log))"
  done
  echo "1,000 in-corpus prompts:"; cat f1000.out
  "$PY" - <<'PEOF3'
import h5py, numpy as np
s = h5py.File("scansplit.h5", "r"); r = h5py.File("repsplit/report.h5", "r"); e = h5py.File("f1000.h5", "r")
thr = [0.95, 0.94, 0.85, 0.76, 0.81, 0.89]
lower = s["/freq/bin_lower"][()]
cnt = s["/freq/counts"][()].astype(np.int64)
ec = e["/blocks/counts"][()]
d = sum(not np.array_equal(cnt[p, b, int(np.argmin(np.abs(lower - thr[b]))):].sum(axis=0), ec[p, b])
        for p in range(ec.shape[0]) for b in range(6))
rh, eh = r["/hellinger"][()], e["/hellinger"][()]
dh = np.abs(rh - eh)
print(f"float16 index vs the scan's float32 bins (1,000 prompts x 6 blocks): {d} (prompt, block) with other counts; "
      f"{int((dh > 0).sum())} prompts with another H, largest |dH| {dh.max():.3g}; mean H {eh.mean():.4f} "
      f"(scan + reduce {rh.mean():.4f})")
PEOF3
  t0=$(now); $MPI "$E" explain --index ixsplit.h5 --corpus csplit.h5 --model ts.h5 --eval-text 1000 --seed 1 --soft \
      -o heldsplit.h5 > heldsplit.out 2> heldsplit.log; t1=$(now)
  echo "1,000 held-out windows (wall $(dt $t0 $t1) s):"; cat heldsplit.out
  "$E" tune scansplit.h5 --soft -o fit.ini
  $MPI "$E" explain --index ixsplit.h5 --corpus csplit.h5 --model ts.h5 --eval-text 1000 --seed 1 --params fit.ini \
      > heldfit.out 2> heldfit.log
  echo "1,000 held-out windows with the fitted thresholds/weights and soft kernel (fit.ini):"
  grep -E "approximation|soft kernel" heldfit.out
;; esac

case $STEPS in *7*)
  echo "== 7. the pruning sketch on the existing index (single process, no mpirun)"
  if [ ! -f ixs.h5 ]; then
    cp ix.h5 ixs.h5
    t0=$(now); nice "$E" index --add-sketch ixs.h5 2> addsketch.log; t1=$(now)
    cat addsketch.log; echo "add-sketch: wall $(dt $t0 $t1) s; index $(stat -c %s ix.h5) -> $(stat -c %s ixs.h5) bytes"
  fi
  NEW="Thou art a wick"
  one() { # label env... : one explain of NEW, prints wall, CPU and the timing line
    label=$1; shift
    t0=$(now); env "$@" nice "$E" explain --index ixs.h5 --corpus c1000.h5 --model ts.h5 --quiet "$NEW" \
        2> one.log >/dev/null; t1=$(now)
    echo "$label: wall $(dt $t0 $t1) s; $(tail -1 one.log)"
    echo "$label $(dt $t0 $t1)" >> sk_walls.txt
  }
  rm -f sk_walls.txt
  evict ixs.h5; one "cold, sketch" CORPUSLENS_SKETCH=1
  evict ixs.h5; one "cold, every row" CORPUSLENS_SKETCH=0
  one "warm-up" CORPUSLENS_SKETCH=0
  for i in 1 2 3; do
    one "warm $i, sketch" CORPUSLENS_SKETCH=1
    one "warm $i, every row" CORPUSLENS_SKETCH=0
  done
  "$PY" - <<'PEOF7'
import statistics
w = {}
for line in open("sk_walls.txt"):
    label, t = line.rsplit(" ", 1)
    w.setdefault(label.split(",")[-1].strip() if label.startswith("warm ") else label, []).append(float(t))
s, f = statistics.median(w["sketch"]), statistics.median(w["every row"])
print(f"warm median wall: sketch {s:.2f} s, every row {f:.2f} s: every row / sketch = {f / s:.2f}")
PEOF7
  # exactness on the full index: the sketch and the full pass write the same bytes
  head -7 t10.txt > t8.txt
  echo "$NEW" >> t8.txt
  for mode in 1 0; do
    CORPUSLENS_SKETCH=$mode nice "$E" explain --index ixs.h5 --corpus c1000.h5 --model ts.h5 --prompt-file t8.txt \
        --quiet --top 10 -o sk$mode.h5 > /dev/null 2> sk$mode.log
    tail -1 sk$mode.log
  done
  cmp sk1.h5 sk0.h5 && echo "sketch vs every row, 8 prompts (7 paper prompts + the new one): explain.h5 byte-identical"
;; esac

echo "done: $(date)"
