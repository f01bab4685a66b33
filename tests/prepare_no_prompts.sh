#!/usr/bin/env bash
# prepare --prompts 0: a corpus without /prompts, for index, explain and serve,
# which need none; scan (and lens, ablate) refuse it with one message, writing
# nothing. explain gives the same output on it as on the same corpus with
# prompts (the prompts play no part in it). Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir prepare_no_prompts
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 40 --vocab-from m.h5 --holdout-fraction 0.1 -o c1.h5 >/dev/null
set +e
# "prompts: N, /prompts: yes|no"
shape() { "$PY" -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print('prompts: %d, /prompts: %s' % (f.attrs['n_prompts'], 'yes' if 'prompts' in f else 'no'))" "$1" 2>&1; }

if "$E" prepare demo.txt --len 6 --prompts 0 --vocab-from m.h5 --holdout-fraction 0.1 -o c0.h5 >out.txt 2>err.txt &&
    [ "$(shape c0.h5)" = "prompts: 0, /prompts: no" ]; then ok "prepare --prompts 0: $(shape c0.h5)"
else bad "prepare --prompts 0: exit $?, $(shape c0.h5)"; cat err.txt; fi
# negative control: the check sees prompts where there are some
[ "$(shape c1.h5)" = "prompts: 40, /prompts: yes" ] && ok "control: prepare --prompts 40: $(shape c1.h5)" || bad "control: $(shape c1.h5)"

"$E" prepare demo.txt --len 6 --prompts 0 --seed 2 -o cs.h5 >out.txt 2>err.txt
rc=$?
[ $rc = 2 ] && grep -q "seed" err.txt && [ ! -e cs.h5 ] && ok "--prompts 0 --seed: usage error: $(head -1 err.txt)" ||
    { bad "--prompts 0 --seed: exit $rc"; cat err.txt; }

"$E" index --model m.h5 --corpus c0.h5 -o i0.h5 >out.txt 2>err.txt && ok "index accepts it" || { bad "index refused it"; tail -3 err.txt; }
"$E" index --model m.h5 --corpus c1.h5 -o i1.h5 >/dev/null 2>&1 || bad "index of the corpus with prompts failed"
X=(--thresholds 0.8,0.8 --weights 1,1)
"$E" explain --index i0.h5 --corpus c0.h5 --model m.h5 "${X[@]}" "thou a" >ex0.txt 2>err.txt || { bad "explain refused it"; tail -3 err.txt; }
"$E" explain --index i1.h5 --corpus c1.h5 --model m.h5 "${X[@]}" "thou a" >ex1.txt 2>/dev/null || bad "explain with prompts failed"
[ -s ex0.txt ] && cmp -s ex0.txt ex1.txt && ok "explain accepts it: the same output as with prompts ($(wc -l <ex0.txt) lines)" ||
    bad "explain: output empty or not the one with prompts"
"$E" explain --index i0.h5 --corpus c0.h5 --model m.h5 "${X[@]}" --eval-text 5 --quiet >ev.txt 2>err.txt &&
    grep -q "n 5, empty" ev.txt && ok "explain --eval-text 5 on it" || { bad "explain --eval-text on it"; tail -3 err.txt; }

# serve: starts, answers /health
"$E" serve --index i0.h5 --corpus c0.h5 --model m.h5 --port 0 >serve.txt 2>serve.err &
sp=$!
url=""
for _ in $(seq 1 300); do url=$(grep -o 'http://[0-9.:]*/' serve.txt 2>/dev/null) && [ -n "$url" ] && break; sleep 0.1; done
code=""
# the status of /api/health (Python's urllib: a bare Debian has no curl)
health() { "$PY" -c "import sys, urllib.request, urllib.error
try: print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)
except Exception: print('')" "${url}api/health" 2>/dev/null; }
for _ in $(seq 1 300); do code=$(health); [ "$code" = 200 ] && break; sleep 0.1; done
kill -TERM $sp 2>/dev/null
wait $sp
[ "$code" = 200 ] && ok "serve accepts it: /api/health 200" || { bad "serve: /api/health '$code' at '$url'"; tail -3 serve.err; }

# scan, lens, ablate refuse it: one message, exit nonzero, nothing written
for c in scan lens ablate; do
    case $c in
    scan) args=(scan --model m.h5 --corpus c0.h5 -o s0.h5) ;;
    lens) args=(lens --model m.h5 --prompts c0.h5) ;;
    ablate) args=(ablate --model m.h5 --corpus c0.h5 -o s0.h5) ;;
    esac
    "$E" "${args[@]}" >out.txt 2>err.txt
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "has no prompts (prepare --prompts 0)" err.txt &&
        [ -z "$(ls s0.h5* 2>/dev/null)" ]; then ok "$c refuses it: exit $rc: $(cat err.txt)"
    else bad "$c: exit $rc, files: $(ls s0.h5* 2>/dev/null)"; cat err.txt; fi
    rm -rf s0.h5*
done

cl_finish
