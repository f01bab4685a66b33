#!/usr/bin/env bash
# corpuslens run: [corpus] vocab_from (issue 23). A checkpoint trained on a
# whole text, explained on a slice of it: the slice has fewer characters, so
# the import needs the whole text's vocabulary (vocab_from), and prepare
# encodes the slice with the model's. Checked end to end (import, prepare,
# scan, reduce), with vocab_from a text and a model file (a relative path);
# then the refusals: a model whose vocabulary lacks a corpus character (the
# character and its position named), vocab_from without [model], and a text
# vocab_from with [model] path.
# Env: CORPUSLENS (binary), TESTDATA (tests/data), PYTHON (python3 with torch: else exit 77).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
PY=${PYTHON:-/usr/bin/python3}
SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "skip: $PY has no torch (it writes the test's checkpoint)"
    exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
export OMPI_MCA_orte_tmpdir_base=$T OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok    $*"; }

TESTDATA=${TESTDATA:-$SRC/tests/data}
set -e
# the whole text: TinyShakespeare's first 200,000 characters; the slice: its
# first 2,000, with fewer distinct characters
"$PY" - "$TESTDATA/tinyshakespeare.txt" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()[:200000]
open("full.txt", "w", encoding="utf-8").write(text)
open("slice.txt", "w", encoding="utf-8").write(text[:2000])
a, b = sorted(set(text)), sorted(set(text[:2000]))
assert len(b) < len(a), (len(a), len(b))
print(f"whole text {len(a)} characters, slice {len(b)}")
PY
"$PY" - "$SRC/tests/python" <<'PY'
import sys, torch
sys.path.insert(0, sys.argv[1])
import torch_models as tm
text = open("full.txt", encoding="utf-8").read()
m = tm.make_lecture(3, vocab_size=len(tm.vocab_of(text)), n_embd=32, n_head=4, n_layer=2, block_size=16)
torch.save(m.state_dict(), "lecture.pt")
PY
set +e

# job NAME EXTRA_CORPUS_LINE MODEL_SECTION: a job on the slice
job() {
    cat >"$1.ini" <<JOB
[corpus]
path = slice.txt
len = 6
prompts = 32
seed = 1
$2
[model]
$3
[scan]
prefilter = 0.5
bin_width = 0.01
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = out-$1
JOB
}
# vocab OF.h5: the vocabulary of a model or corpus file, as text
vocab() { "$PY" -c 'import h5py,sys; print(repr(h5py.File(sys.argv[1])["/vocab"][()]))' "$1"; }

# 1. without vocab_from, the import takes the slice's characters and fails (the
#    case vocab_from exists for): a negative control
job plain "" "checkpoint = lecture.pt"
if "$CL" run plain.ini >plain.out 2>&1; then
    fail "a checkpoint with the slice's vocabulary was accepted: $(cat plain.out)"
else
    grep -q "vocab" plain.out && ok "without vocab_from the import refuses the slice's vocabulary" ||
        fail "plain: $(cat plain.out)"
fi

# 2. vocab_from = the whole text: import, prepare, scan, reduce
job text "vocab_from = full.txt" "checkpoint = lecture.pt"
if "$CL" run text.ini >text.out 2>&1 && [ -s out-text/report/report.md ]; then
    ok "checkpoint + slice + vocab_from (a text): the job ran to its report"
else
    fail "text: $(tail -20 text.out)"
fi
grep -q -- "--vocab-file full.txt" out-text/model.h5.stamp 2>/dev/null || fail "text: the import's key lacks --vocab-file full.txt"
"$CL" init --config n_layer=1,n_embd=8,n_head=2,block_size=8 --vocab-from full.txt -o ref.h5 >/dev/null
if [ -f out-text/corpus.h5 ] && [ "$(vocab out-text/corpus.h5)" = "$(vocab ref.h5)" ] &&
    [ "$(vocab out-text/model.h5)" = "$(vocab ref.h5)" ]; then
    ok "the imported model and corpus.h5 have the whole text's vocabulary"
else
    fail "text: corpus.h5/model.h5 vocabulary is not the whole text's"
fi

# 3. vocab_from = a model file (relative path, like the job's other paths): import and prepare take it
job model "vocab_from = out-text/model.h5" "checkpoint = lecture.pt"
if "$CL" run model.ini --stages import,prepare >model.out 2>&1 &&
    [ "$(vocab out-model/corpus.h5)" = "$(vocab ref.h5)" ]; then
    ok "vocab_from = a model file: import and prepare took its vocabulary"
else
    fail "model: $(tail -20 model.out)"
fi
grep -q -- "--vocab-from out-text/model.h5" out-model/corpus.h5.stamp 2>/dev/null ||
    fail "model: prepare's key lacks --vocab-from out-text/model.h5"

# 4. a model whose vocabulary lacks a corpus character: one clear message naming it and its position
"$CL" init --config n_layer=1,n_embd=8,n_head=2,block_size=8 --vocab-from slice.txt -o small.h5 >/dev/null
read -r want_char want_pos < <("$PY" - <<'PY'
text = open("full.txt", encoding="utf-8").read()
have = set(text[:2000])
i = next(k for k, ch in enumerate(text) if ch not in have)
print(text[i], i)
PY
)
cat >lacks.ini <<JOB
[corpus]
path = full.txt
len = 6
prompts = 32
[model]
path = small.h5
[output]
dir = out-lacks
JOB
if "$CL" run lacks.ini >lacks.out 2>&1; then
    fail "lacks: a corpus character outside the model's vocabulary was accepted"
else
    want="character '$want_char' (U+$(printf %04X "'$want_char")) at position $want_pos is not in the model's vocabulary"
    if grep -qF -- "$want" lacks.out && [ "$(grep -c "not in the model's vocabulary" lacks.out)" = 1 ]; then
        ok "lacks: $want"
    else
        fail "lacks: expected once '$want': $(cat lacks.out)"
    fi
    [ -e out-lacks/corpus.h5 ] && fail "lacks: left a corpus.h5"
fi

# 5. refusals before anything runs
cat >notrain.ini <<JOB
[corpus]
path = slice.txt
len = 6
prompts = 32
vocab_from = full.txt
[train]
steps = 1
batch = 2
ctx = 8
[output]
dir = out-notrain
JOB
if "$CL" run notrain.ini --dry-run >notrain.out 2>&1; then
    fail "notrain: vocab_from without [model] accepted"
else
    grep -qF "notrain.ini:5: corpus.vocab_from goes with [model]" notrain.out && ok "vocab_from with [train] refused" ||
        fail "notrain: $(cat notrain.out)"
fi
job pathtext "vocab_from = full.txt" "path = small.h5"
if "$CL" run pathtext.ini --dry-run >pathtext.out 2>&1; then
    fail "pathtext: a text vocab_from with [model] path accepted"
else
    grep -qF "corpus.vocab_from: full.txt is a text, but with [model] path" pathtext.out &&
        ok "a text vocab_from with [model] path refused" || fail "pathtext: $(cat pathtext.out)"
fi
job missing "vocab_from = nothere.h5" "checkpoint = lecture.pt"
if "$CL" run missing.ini --dry-run >missing.out 2>&1; then
    fail "missing: a vocab_from that does not exist accepted"
else
    grep -qF "corpus.vocab_from: cannot open nothere.h5" missing.out && ok "a missing vocab_from refused" ||
        fail "missing: $(cat missing.out)"
fi

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
