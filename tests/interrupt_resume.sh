#!/usr/bin/env bash
# SIGINT / SIGTERM in scan, index and train (one process, and mpiexec -n 2):
# the command stops at a shard / step boundary, keeps what it finished, says
# how to resume, exits 130 (SIGINT) or 143 (SIGTERM); the same command run
# again resumes with that work kept ("resuming: K of N", K >= 1) and writes a
# file byte-identical to an uninterrupted run (scan: wall_seconds set to 0 in
# copies of both files). The interrupt is deterministic:
# CORPUSLENS_FAULT=RANK:STEP@N:int raises SIGINT in that rank alone at its
# N-th shard / step (under mpiexec: only one rank gets it, the other must
# hear of it and neither may hang); CORPUSLENS_FAULT=RANK:STEP@N:wait parks
# that rank until a real SIGINT sent to mpiexec (which passes SIGTERM to
# every rank) once the rank says it waits. Every wait is bounded.
# Env: CORPUSLENS, PYTHON (h5py).
. "$(dirname "$0")/lib.sh"
cl_workdir interrupt_resume
one() { timeout -k 5 120 "$E" "$@"; }
mpi() { timeout -k 5 120 mpiexec -n 2 --oversubscribe "$E" "$@"; }
set -e
"$E" demo-corpus --chars 30000 -o demo.txt >/dev/null
"$E" init --config n_layer=2,n_embd=32,n_head=4,block_size=16 --vocab-from demo.txt --seed 1 -o m.h5 >/dev/null
"$E" prepare demo.txt --len 6 --prompts 40 --seed 1 --vocab-from m.h5 -o c.h5 >/dev/null
set +e

# scan.h5 with its one wall-time attribute set to 0 (h5py rewrites the scalar in place)
zero_wall() {
    cp "$1" "$2" && "$PY" -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f.attrs.modify('wall_seconds', 0.0)" "$2"
}

# $1 label, $2 file, $3 rc, $4 want rc ("nonzero" or a number), $5 state folder, $6.. its files
check_stopped() {
    local label=$1 out=$2 rc=$3 want=$4 state=$5
    shift 5
    local okrc=0
    if [ "$want" = nonzero ]; then [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && okrc=1
    else [ "$rc" = "$want" ] && okrc=1; fi
    local missing=""
    for f in "$@"; do [ -f "$state/$f" ] || missing="$missing $f"; done
    if [ $okrc = 1 ] && [ ! -e "$out" ] && [ -z "$missing" ]; then
        ok "$label: exit $rc, no $out, kept: $(ls "$state" | tr '\n' ' ')"
    else
        bad "$label: exit $rc (want $want), $out $( [ -e "$out" ] && echo exists || echo absent), missing in $state:$missing"
        tail -5 err.txt
    fi
    if grep -q "interrupted by SIG[A-Z]*: [0-9]* of [0-9]* shards done" err.txt && grep -q "run the same command again" err.txt; then
        ok "$label: says what was kept and how to resume: $(grep -o 'interrupted by.*' err.txt | head -1)"
    else
        bad "$label: no interrupt message with the resume hint"; tail -5 err.txt
    fi
}

# $1 label; err.txt of the rerun
check_resumed() {
    if grep -q "resuming: [1-9][0-9]* of" err.txt; then ok "$1: the rerun $(grep -o 'resuming: [^(]*' err.txt)"
    else bad "$1: the rerun did not resume (work lost)"; tail -3 err.txt; fi
}

# ---- scan
SCAN=(scan --model m.h5 --corpus c.h5 --prefilter 0.5 --bin-width 0.02 --batch 64)
# references: one process writes through the serial HDF5 driver, ranks
# through MPI-IO (the same datasets, other bytes): one of each
one "${SCAN[@]}" -o ref1.h5 2>/dev/null || bad "scan: the uninterrupted run failed"
mpi "${SCAN[@]}" -o ref2.h5 >/dev/null 2>&1 || bad "scan: the uninterrupted 2-rank run failed"
zero_wall ref1.h5 ref1_0.h5
zero_wall ref2.h5 ref2_0.h5

scan_case() { # $1 label, $2 output, $3 the runner (one / mpi), $4 the reference (wall_seconds 0)
    local label=$1 out=$2
    if "$3" "${SCAN[@]}" -o "$out" >out.txt 2>err.txt; then
        check_resumed "$label"
        zero_wall "$out" s0.h5
        if cmp -s "$4" s0.h5; then ok "$label: resumed file == uninterrupted file, byte for byte (wall_seconds 0)"
        else bad "$label: the resumed file differs from the uninterrupted one"; fi
        [ ! -d "$out.state" ] && ok "$label: the state is gone after the finished rerun" || bad "$label: $out.state left"
    else
        bad "$label: the rerun failed"; tail -5 err.txt
    fi
}

CORPUSLENS_FAULT=0:scan.shard@4:int one "${SCAN[@]}" -o s1.h5 >out.txt 2>err.txt
check_stopped "scan, 1 process, SIGINT at shard 4" s1.h5 $? 130 s1.h5.state args rank0.bin
scan_case "scan, 1 process" s1.h5 one ref1_0.h5

t0=$SECONDS
CORPUSLENS_FAULT=1:scan.shard@3:int mpi "${SCAN[@]}" -o s2.h5 >out.txt 2>err.txt
rc=$? dt=$((SECONDS - t0))
check_stopped "scan, 2 ranks, SIGINT on rank 1 only" s2.h5 $rc nonzero s2.h5.state args rank0.bin rank1.bin
[ $dt -lt 100 ] && ok "scan, 2 ranks: no hang (${dt} s)" || bad "scan, 2 ranks: ran into the timeout"
grep -q "Exit code: *130" err.txt && ok "scan, 2 ranks: the rank's exit status 130" || bad "scan, 2 ranks: no exit status 130"
scan_case "scan, 2 ranks" s2.h5 mpi ref2_0.h5

# a real SIGINT to mpiexec, once, as a Ctrl-C at a terminal sends it: Open
# MPI's mpiexec sends SIGCONT, then SIGTERM to every rank N s later and SIGKILL
# another N s later (N = odls_base_sigkill_timeout: 1 by default, 10 here so
# that a loaded machine saves in time). timeout runs in the foreground: without
# --foreground it passes a signal on to its child AND to its process group,
# which holds mpiexec too, and a second SIGINT within ~1 s makes mpiexec abort
# at once, before any rank saves (mpiexec exit 1, nothing saved: the flake of
# the last round, reproduced by two SIGINTs 0.05-0.6 s apart; a user's second
# Ctrl-C does the same, on purpose).
CORPUSLENS_FAULT=1:scan.shard@3:wait timeout --foreground -k 30 120 mpiexec -n 2 --oversubscribe --mca odls_base_sigkill_timeout 10 \
    "$E" "${SCAN[@]}" -o s3.h5 >out.txt 2>err.txt &
tp=$!
for _ in $(seq 1 600); do grep -q "waits for a signal" err.txt 2>/dev/null && break; sleep 0.1; done
kill -INT $tp
wait $tp
check_stopped "scan, 2 ranks, SIGINT to mpiexec" s3.h5 $? nonzero s3.h5.state args rank0.bin rank1.bin
grep -q "interrupted by SIGTERM" err.txt && ok "scan, SIGINT to mpiexec: the ranks got SIGTERM and saved" || bad "scan, SIGINT to mpiexec: no SIGTERM message"
scan_case "scan, 2 ranks, after mpiexec's signal" s3.h5 mpi ref2_0.h5

# negative control: the comparison sees a changed attribute
zero_wall s3.h5 s0.h5
"$PY" -c "import h5py; f = h5py.File('s0.h5', 'r+'); f.attrs.modify('n_trie_nodes', 1)"
if ! cmp -s ref2_0.h5 s0.h5; then ok "control: cmp sees one changed attribute"; else bad "control: cmp missed a change"; fi

# ---- index
IX=(index --model m.h5 --corpus c.h5 --batch 64)
one "${IX[@]}" -o iref.h5 2>/dev/null || bad "index: the uninterrupted build failed"
index_case() { # $1 label, $2 output, $3 runner
    if "$3" "${IX[@]}" -o "$2" >out.txt 2>err.txt; then
        check_resumed "$1"
        cmp -s iref.h5 "$2" && ok "$1: resumed index == uninterrupted one, byte for byte" || bad "$1: the resumed index differs"
    else
        bad "$1: the rerun failed"; tail -5 err.txt
    fi
}
CORPUSLENS_FAULT=0:index.shard@4:int one "${IX[@]}" -o i1.h5 >out.txt 2>err.txt
check_stopped "index, 1 process, SIGINT at shard 4" i1.h5 $? 130 i1.h5.parts rank0.bin rank0.bin.synced
index_case "index, 1 process" i1.h5 one
t0=$SECONDS
CORPUSLENS_FAULT=1:index.shard@3:int mpi "${IX[@]}" -o i2.h5 >out.txt 2>err.txt
rc=$? dt=$((SECONDS - t0))
check_stopped "index, 2 ranks, SIGINT on rank 1 only" i2.h5 $rc nonzero i2.h5.parts rank0.bin rank1.bin rank0.bin.synced rank1.bin.synced
[ $dt -lt 100 ] && ok "index, 2 ranks: no hang (${dt} s)" || bad "index, 2 ranks: ran into the timeout"
index_case "index, 2 ranks" i2.h5 mpi

# ---- train: SIGINT at a step; the checkpoint holds the steps done; the printed command resumes
TRAIN=(train --corpus demo.txt --init m.h5 --steps 6 --batch 4 --ctx 8 --eval-every 2 --eval-batches 1 --dropout 0.1 --seed 3)
step_of() { "$PY" -c "import h5py, sys; print(int(h5py.File(sys.argv[1], 'r')['/train/step'][0]))" "$1" 2>/dev/null; }
train_case() { # $1 label, $2 runner, $3 fault, $4 want step, $5 want rc, $6 reference
    local label=$1 run=$2 out=t_$2.h5
    CORPUSLENS_FAULT=$3 "$run" "${TRAIN[@]}" -o "$out" >out.txt 2>err.txt
    local rc=$? step
    step=$(step_of "$out")
    local okrc=0
    if [ "$5" = nonzero ]; then [ $rc -ne 0 ] && [ $rc -ne 124 ] && okrc=1; else [ $rc = "$5" ] && okrc=1; fi
    if [ $okrc = 1 ] && [ "$step" = "$4" ]; then ok "$label: exit $rc, checkpoint at step $step"
    else bad "$label: exit $rc (want $5), checkpoint step '$step' (want $4)"; tail -5 err.txt; fi
    local cmdline
    cmdline=$(grep -A1 "resume with:" err.txt | tail -1 | sed 's/^ *//')
    if grep -q "interrupted by SIGINT at step $4 of 6" err.txt && [ -n "$cmdline" ]; then ok "$label: says: $cmdline"
    else bad "$label: no interrupt message with the resume command"; tail -3 err.txt; fi
    # the printed command, with this build's binary and this test's mpiexec flags
    cmdline=${cmdline/mpirun -n 2 corpuslens/mpiexec -n 2 --oversubscribe $E}
    cmdline=${cmdline/#corpuslens/$E}
    if timeout -k 5 120 bash -c "$cmdline" >out.txt 2>err.txt && cmp -s "$6" "$out"; then
        ok "$label: the printed command resumed it: model file == uninterrupted one, byte for byte"
    else
        bad "$label: resuming with '$cmdline' failed or differs"; tail -3 err.txt
    fi
}
one "${TRAIN[@]}" -o tref1.h5 >/dev/null 2>&1 || bad "train: the uninterrupted run failed"
mpi "${TRAIN[@]}" -o tref2.h5 >/dev/null 2>&1 || bad "train: the uninterrupted 2-rank run failed"
train_case "train, 1 process, SIGINT at step 4" one 0:train.step@4:int 4 130 tref1.h5
train_case "train, 2 ranks, SIGINT on rank 1 at step 3" mpi 1:train.step@3:int 3 nonzero tref2.h5

cl_finish
