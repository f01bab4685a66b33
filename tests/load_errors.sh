#!/usr/bin/env bash
# A model or corpus file that cannot be loaded gets one message that names its
# path once: the loaders (cl_model_load/map, cl_corpus_load/open) name it, and
# the commands must not put it in front again ("PATH: cannot open PATH: ...").
# Each command: nonzero exit, one message line on stderr, the path once in it,
# no output file. And scan/index refuse a model that is not a causal LM.
# Env: CORPUSLENS (binary), PYTHON (with h5py).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
PY=${PYTHON:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

echo junk >"$T/junk.h5"                       # not HDF5
"$PY" -c "import h5py,sys; h5py.File(sys.argv[1],'w').attrs['format']='x'" "$T/empty.h5" || exit 1

# check NAME PATH ARGS...: the command fails, its one message line names PATH once
check() {
    local name=$1 path=$2
    shift 2
    rm -f "$T/out.h5" "$T/out.h5.tmp"
    if "$CL" "$@" >"$T/stdout" 2>"$T/stderr"; then
        fail "$name: accepted"
        return
    fi
    local lines n before=$failures
    # serve's progress line ("loading the model, ...") comes before its message
    grep '^corpuslens' "$T/stderr" | grep -v 'loading the model, corpus and index' >"$T/msg"
    lines=$(wc -l <"$T/msg")
    n=$(grep -o -F -- "$path" "$T/msg" | wc -l)
    [ "$lines" = 1 ] || fail "$name: $lines message lines: $(cat "$T/stderr")"
    [ "$n" = 1 ] || fail "$name: the path occurs $n times: $(cat "$T/msg")"
    [ -e "$T/out.h5" ] && fail "$name: left out.h5"
    [ "$failures" = "$before" ] && echo "ok: $name: $(cat "$T/msg")"
    return 0
}

for bad in junk empty; do
    B=$T/$bad.h5
    check "scan, model $bad" "$B" scan --model "$B" --corpus "$T/none.h5" -o "$T/out.h5"
    check "index, model $bad" "$B" index --model "$B" --corpus "$T/none.h5" -o "$T/out.h5"
    check "explain, model $bad" "$B" explain --index "$T/none.h5" --corpus "$T/none.h5" --model "$B" -o "$T/out.h5" the
    check "serve, model $bad" "$B" serve --index "$T/none.h5" --corpus "$T/none.h5" --model "$B" --port 0
    check "predict, model $bad" "$B" predict --model "$B" the
done
# a valid (tiny, random) model, a bad corpus
M=$T/m.h5
printf "the cat" >"$T/v.txt"
"$CL" init --config n_layer=1,n_head=1,n_embd=8,block_size=8 --vocab-from "$T/v.txt" -o "$M" >/dev/null 2>"$T/init.err" ||
    { echo "init failed: $(cat "$T/init.err")" >&2; exit 1; }
for bad in junk empty; do
    B=$T/$bad.h5
    check "scan, corpus $bad" "$B" scan --model "$M" --corpus "$B" -o "$T/out.h5"
    check "index, corpus $bad" "$B" index --model "$M" --corpus "$B" -o "$T/out.h5"
    check "explain, corpus $bad" "$B" explain --index "$T/none.h5" --corpus "$B" --model "$M" -o "$T/out.h5" the
    check "serve, corpus $bad" "$B" serve --index "$T/none.h5" --corpus "$B" --model "$M" --port 0
done
# an encoder or a classifier: the trie forward (scan, index, explain) computes a
# node once for every string it begins, right only for a causal LM; refused
printf 'the cat ate the hat that the cat ate' >"$T/c.txt"
"$CL" prepare "$T/c.txt" --len 4 --prompts 3 --vocab-from "$M" -o "$T/c.h5" >/dev/null 2>&1 ||
    fail "prepare of the small corpus failed"
for cfg in causal=0 n_classes=3 pad_id=1; do
    "$CL" init --config n_layer=1,n_head=1,n_embd=8,block_size=8,$cfg --vocab-from "$T/v.txt" -o "$T/e.h5" >/dev/null 2>&1 ||
        { fail "init $cfg failed"; continue; }
    for cmd in scan index; do
        rm -f "$T/out.h5"
        if "$CL" $cmd --model "$T/e.h5" --corpus "$T/c.h5" -o "$T/out.h5" >/dev/null 2>"$T/stderr"; then
            fail "$cmd accepted a model with $cfg"
        elif ! grep -q "not a causal language model" "$T/stderr"; then
            fail "$cmd, $cfg: $(cat "$T/stderr")"
        elif [ -e "$T/out.h5" ]; then
            fail "$cmd, $cfg: left out.h5"
        else
            echo "ok: $cmd refuses $cfg: $(head -1 "$T/stderr")"
        fi
    done
done
[ "$failures" = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "all load errors name their path once"
