#!/bin/bash
# generate: the context cropped to the trained context (saved by train and by
# import --ctx, read back), --ctx, the key/value cache (the same text as
# recomputing the context at every step while the context has not filled,
# then the cache's half-window shift), --prompt - (standard input), refusals.
# Environment: CORPUSLENS, SHARED (the trained model; the import case skips
# without it).
set -u
: "${CORPUSLENS:?}"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
T=$CORPUSLENS
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
ctx_attr() { /usr/bin/python3 -c "import h5py,sys; a=h5py.File(sys.argv[1],'r')['config'].attrs; print(int(a['trained_ctx']) if 'trained_ctx' in a else 0)" "$1"; }
for i in $(seq 200); do echo "first citizen before we proceed any further hear me speak $i"; done > "$d/corpus.txt"

# train saves the context it trained on
"$T" train --corpus "$d/corpus.txt" --config n_layer=2,n_head=2,n_embd=16,block_size=32 --steps 2 --eval-every 0 \
    --eval-batches 1 --batch 2 --ctx 12 --seed 1 -o "$d/m.h5" > /dev/null 2> "$d/err" || { cat "$d/err"; bad "train"; }
[ "$(ctx_attr "$d/m.h5")" = 12 ] && ok "train --ctx 12 saves trained_ctx 12" || bad "train saved trained_ctx $(ctx_attr "$d/m.h5")"
"$T" init --config n_layer=2,n_head=2,n_embd=16,block_size=32 --vocab-from "$d/corpus.txt" -o "$d/init.h5" > /dev/null
[ "$(ctx_attr "$d/init.h5")" = 0 ] && ok "init: trained_ctx unknown" || bad "init wrote trained_ctx"

# the cache gives the text of recomputing the context at every step while it fits...
gen() { "$T" generate --model "$d/m.h5" --prompt "first " --seed 3 "$@" 2> "$d/gen.err"; }
a=$(gen -n 6) b=$(gen -n 6 --no-cache)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "cache = no cache within the context: '$a'" || bad "cache '$a' vs no cache '$b'"
# ... and crops to the trained context: with --ctx 32 (the whole block) the text differs after 12
a=$(gen -n 60) b=$(gen -n 60 --ctx 32)
[ "${#a}" -eq 66 ] && [ "$a" != "$b" ] && [ "${a:0:12}" = "${b:0:12}" ] && ok "trained context 12 vs --ctx 32 differ after the context" \
    || bad "ctx 12 vs 32: '$a' / '$b'"
# a long run keeps going past many shifts (each sample sees 6..12 characters)
a=$(gen -n 300)
[ "${#a}" -eq 306 ] && ok "300 characters past the context" || bad "300 characters: ${#a}"
# standard input
a=$(printf 'first ' | "$T" generate --model "$d/m.h5" --prompt - --seed 3 -n 6 2>/dev/null) b=$(gen -n 6)
[ "$a" = "$b" ] && ok "--prompt - reads standard input" || bad "--prompt -: '$a' vs '$b'"

# refusals
"$T" generate --model "$d/m.h5" --ctx 33 -n 5 > /dev/null 2> "$d/err"; rc=$?
[ $rc = 2 ] && grep -q "block_size (32)" "$d/err" && ok "--ctx 33 > block_size refused" || { bad "--ctx 33: rc $rc"; cat "$d/err"; }
"$T" generate --model "$d/m.h5" --prompt "first Z" -n 5 > /dev/null 2> "$d/err"; rc=$?
[ $rc = 1 ] && grep -q "Z" "$d/err" && ok "unknown character refused: $(head -1 "$d/err")" || bad "unknown character: rc $rc"

# import --ctx, on the shared model
if [ -f "${SHARED:-/nonexistent}/models/lecture-tinyshakespeare-s1337.pt" ]; then
    "$T" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" \
        --ctx 64 -o "$d/ts.h5" > /dev/null || bad "import --ctx"
    [ "$(ctx_attr "$d/ts.h5")" = 64 ] && ok "import --ctx 64 saves trained_ctx 64" || bad "import --ctx: $(ctx_attr "$d/ts.h5")"
    "$T" import "$SHARED/models/lecture-tinyshakespeare-s1337.pt" --corpus "$SHARED/data/tinyshakespeare.txt" \
        --ctx 300 -o "$d/ts2.h5" > /dev/null 2> "$d/err"; rc=$?
    [ $rc = 2 ] && [ ! -e "$d/ts2.h5" ] && ok "import --ctx 300 > block_size refused" || bad "import --ctx 300: rc $rc"
else
    echo "skip import --ctx: no ../shared model"
fi
exit $fail
