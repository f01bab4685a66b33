#!/usr/bin/env bash
# corpuslens prepare from the command line: refusals (message, nonzero exit, no
# output file left behind), seeded sampling, --vocab-from, and, with "mpi" as
# the first argument, a run under mpiexec -n 2 (rank 0 writes, once).
# Env: CORPUSLENS (binary), PYTHON (with h5py + numpy).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# A small UTF-8 corpus with repeats and multibyte characters.
printf 'the cat sat on the mat.\nthe cät sat — on the hat!\n' >"$T/c.txt"

# refuse WANT ARGS...: prepare must exit nonzero, print WANT on stderr, and leave
# neither out.h5 nor out.h5.tmp.
refuse() {
    local want=$1
    shift
    rm -f "$T/out.h5" "$T/out.h5.tmp"
    if "$CL" prepare "$@" -o "$T/out.h5" >"$T/stdout" 2>"$T/stderr"; then
        fail "accepted: prepare $*"
        return
    fi
    grep -qF -- "$want" "$T/stderr" || fail "prepare $*: stderr lacks '$want': $(cat "$T/stderr")"
    [ -e "$T/out.h5" ] && fail "prepare $*: left out.h5"
    [ -e "$T/out.h5.tmp" ] && fail "prepare $*: left out.h5.tmp"
    [ -s "$T/stdout" ] && fail "prepare $*: printed on stdout: $(cat "$T/stdout")"
    return 0
}

if [ "${1:-}" = mpi ]; then
    MPIEXEC=${MPIEXEC:-mpiexec}
    $MPIEXEC -n 2 --oversubscribe "$CL" prepare "$T/c.txt" --len 3 --prompts 5 --seed 1 \
        -o "$T/mpi.h5" >"$T/stdout" 2>"$T/stderr" || fail "mpiexec -n 2 prepare failed: $(cat "$T/stderr")"
    n=$(grep -c '^prepare:' "$T/stdout")
    [ "$n" = 1 ] || fail "expected one summary line under 2 ranks, got $n"
    "$CL" prepare "$T/c.txt" --len 3 --prompts 5 --seed 1 -o "$T/one.h5" >/dev/null ||
        fail "single-process prepare failed"
    "$PY" - "$T/mpi.h5" "$T/one.h5" <<'EOF' || fail "mpi and single-process files differ"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
for k in ["vocab", "substrings/tokens", "substrings/first_offset", "substrings/next/indptr",
          "substrings/next/token", "substrings/next/count", "prompts/index", "prompts/text"]:
    assert np.array_equal(a[k][()], b[k][()]), k
EOF
    # a refusal under 2 ranks: one message, nonzero exit, nothing left
    rm -f "$T/bad.h5"
    if $MPIEXEC -n 2 --oversubscribe "$CL" prepare "$T/c.txt" --len 3 --prompts 100000 -o "$T/bad.h5" \
        >/dev/null 2>"$T/stderr"; then
        fail "mpiexec: P > N accepted"
    fi
    n=$(grep -c 'cannot sample' "$T/stderr")
    [ "$n" = 1 ] || fail "expected one error line under 2 ranks, got $n: $(cat "$T/stderr")"
    [ -e "$T/bad.h5" ] || [ -e "$T/bad.h5.tmp" ] && fail "mpiexec refusal left a file"
    [ "$failures" = 0 ] && echo "corpus_cli mpi: all checks passed"
    exit $((failures > 0))
fi

# ---- refusals ----
refuse "cannot sample 1000 prompts" "$T/c.txt" --len 3 --prompts 1000 --seed 1
refuse "--seed is for --prompts P with P > 0" "$T/c.txt" --len 3 --prompts 0 --seed 1  # 0: no prompts (prepare_no_prompts.sh)
refuse "--prompts: -5 is out of range 0.." "$T/c.txt" --len 3 --prompts -5
refuse "--prompts: 'x' is not an integer" "$T/c.txt" --len 3 --prompts x
refuse "--len: 0 is out of range 1..256" "$T/c.txt" --len 0 --prompts 1
refuse "--len: 257 is out of range 1..256" "$T/c.txt" --len 257 --prompts 1
refuse "--len is required" "$T/c.txt" --prompts 1
refuse "give --prompts P or --prompt-file FILE" "$T/c.txt" --len 3
refuse "--prompt-file excludes" "$T/c.txt" --len 3 --prompts 2 --prompt-file /dev/null
refuse "unknown option --bogus" "$T/c.txt" --len 3 --prompts 2 --bogus 1
refuse "cannot open $T/missing.txt" "$T/missing.txt" --len 3 --prompts 1
: >"$T/empty.txt"
refuse "corpus is empty" "$T/empty.txt" --len 3 --prompts 1
printf 'ab' >"$T/short.txt"
refuse "fewer than the substring length 3" "$T/short.txt" --len 3 --prompts 1
printf 'abc\xff\xfedef' >"$T/bad-utf8.txt"
refuse "invalid UTF-8 at byte 3" "$T/bad-utf8.txt" --len 3 --prompts 1

printf '0\n1\n999\n' >"$T/p-range.txt"
refuse "p-range.txt:3: index 999 is out of range" "$T/c.txt" --len 3 --prompt-file "$T/p-range.txt"
printf '0\n1\n0\n' >"$T/p-dup.txt"
refuse "p-dup.txt:3: index 0 repeats line 1" "$T/c.txt" --len 3 --prompt-file "$T/p-dup.txt"
printf '0\nten\n' >"$T/p-text.txt"
refuse "p-text.txt:2: 'ten' is not a non-negative integer" "$T/c.txt" --len 3 --prompt-file "$T/p-text.txt"
printf '0\n\n1\n' >"$T/p-empty-line.txt"
refuse "p-empty-line.txt:2: empty line" "$T/c.txt" --len 3 --prompt-file "$T/p-empty-line.txt"
: >"$T/p-none.txt"
refuse "no prompt indices" "$T/c.txt" --len 3 --prompt-file "$T/p-none.txt"
refuse "cannot open $T/p-missing.txt" "$T/c.txt" --len 3 --prompt-file "$T/p-missing.txt"

# a failure after the temporary file was written (rename onto a directory):
# the .tmp must be removed
mkdir "$T/outdir"
if "$CL" prepare "$T/c.txt" --len 3 --prompts 2 -o "$T/outdir" >/dev/null 2>"$T/stderr"; then
    fail "prepare -o DIRECTORY accepted"
fi
grep -qF "cannot rename $T/outdir.tmp to $T/outdir" "$T/stderr" || fail "rename failure: $(cat "$T/stderr")"
[ -e "$T/outdir.tmp" ] && fail "a failed rename left outdir.tmp"

# A minimal model file: what prepare reads of it (/config format + block_size,
# /vocab), with a vocabulary in a non-sorted order and without 'ä'.
"$PY" - "$T/model.h5" "$T/c.txt" <<'EOF' || fail "could not write the test model file"
import sys, h5py, numpy as np
text = open(sys.argv[2], encoding="utf-8").read()
chars = sorted(set(text) - {"ä"}, reverse=True)
with h5py.File(sys.argv[1], "w") as f:
    g = f.create_group("config")
    # fixed-length UTF-8, as corpuslens writes its string attributes
    g.attrs.create("format", "corpuslens-model", dtype=h5py.string_dtype("utf-8", 16))
    g.attrs["block_size"] = 8
    f["vocab"] = np.array([c.encode("utf-8") for c in chars], dtype="S4")
with h5py.File(sys.argv[1].replace("model.h5", "not-model.h5"), "w") as f:
    f["x"] = np.arange(3)
EOF
refuse "character 'ä' (U+00E4) at position 29 is not in the model's vocabulary" \
    "$T/c.txt" --len 3 --prompts 2 --vocab-from "$T/model.h5"
refuse "--len 9 exceeds the model's block_size 8" "$T/c.txt" --len 9 --prompts 2 --vocab-from "$T/model.h5"
refuse "not a corpuslens model file" "$T/c.txt" --len 3 --prompts 2 --vocab-from "$T/not-model.h5"
refuse "not an HDF5 file" "$T/c.txt" --len 3 --prompts 2 --vocab-from "$T/c.txt"

# the same with a real model file, when `corpuslens init` is there
if "$CL" init --help >/dev/null 2>&1; then
    sed 's/ä/a/' "$T/c.txt" >"$T/c-no-umlaut.txt"
    "$CL" init --config n_layer=1,n_head=1,n_embd=4,block_size=5 --vocab-from "$T/c-no-umlaut.txt" \
        -o "$T/real-model.h5" >/dev/null || fail "corpuslens init failed"
    refuse "character 'ä' (U+00E4) at position 29 is not in the model's vocabulary" \
        "$T/c.txt" --len 3 --prompts 2 --vocab-from "$T/real-model.h5"
    refuse "--len 6 exceeds the model's block_size 5" "$T/c-no-umlaut.txt" --len 6 --prompts 2 \
        --vocab-from "$T/real-model.h5"
    "$CL" prepare "$T/c-no-umlaut.txt" --len 5 --prompts 2 --vocab-from "$T/real-model.h5" \
        -o "$T/real.h5" >/dev/null 2>"$T/stderr" || fail "prepare with a real model: $(cat "$T/stderr")"
fi

# ---- successes ----
# the model's vocabulary (with 'ä' mapped out of the corpus) is used in its order
sed 's/ä/a/' "$T/c.txt" >"$T/c2.txt"
"$CL" prepare "$T/c2.txt" --len 3 --prompts 4 --seed 3 --vocab-from "$T/model.h5" -o "$T/v.h5" \
    >"$T/stdout" 2>"$T/stderr" || fail "--vocab-from run failed: $(cat "$T/stderr")"
# seeded sampling: same seed same prompts, other seed other prompts
for s in 7 7 8; do
    "$CL" prepare "$T/c.txt" --len 2 --prompts 20 --seed $s -o "$T/s$s-$RANDOM.h5" >/dev/null 2>&1 ||
        fail "seeded run $s failed"
done
"$PY" - "$T" <<'EOF' || fail "output checks failed"
import sys, glob, h5py, numpy as np
T = sys.argv[1]
def attr_str(v):  # h5py returns fixed-length string attributes as bytes
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)
# --vocab-from: /vocab is the model's, tokens decode to the corpus's windows
with h5py.File(T + "/v.h5") as f, h5py.File(T + "/model.h5") as m:
    assert list(f["vocab"][()]) == list(m["vocab"][()]), "vocab is not the model's"
    voc = [v.decode("utf-8") for v in f["vocab"][()]]
    text = open(T + "/c2.txt", encoding="utf-8").read()
    toks, off = f["substrings/tokens"][()], f["substrings/first_offset"][()]
    for row, o in zip(toks, off):
        assert "".join(voc[t] for t in row) == text[o:o + 3]
    assert attr_str(f.attrs["vocab_source"]) == T + "/model.h5"
    assert len(attr_str(f.attrs["vocab_sha256"])) == 64
s7 = sorted(glob.glob(T + "/s7-*.h5"))
s8 = glob.glob(T + "/s8-*.h5")
a, b, c = (h5py.File(p)["prompts/index"][()] for p in s7 + s8)
assert np.array_equal(a, b), "same seed, different prompts"
assert not np.array_equal(a, c), "seeds 7 and 8 gave the same prompts"
assert len(set(a.tolist())) == 20, "prompts repeat"
f = h5py.File(s7[0])
assert f.attrs["seed"] == 7 and attr_str(f.attrs["prompt_source"]) == "seed", dict(f.attrs)
assert f.attrs["n_prompts"] == 20
EOF

[ "$failures" = 0 ] && echo "corpus_cli: all checks passed"
exit $((failures > 0))
