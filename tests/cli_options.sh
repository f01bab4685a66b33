#!/bin/bash
# The option parser (src/cli/options.c), once, generically: its errors and
# both value spellings through one command, then every command's table
# through its --help (every option the table declares is listed; an unknown
# option is refused with the did-you-mean text), and that a single-process
# command started without mpirun does not initialise MPI.
set -u
CL=${CORPUSLENS:?set CORPUSLENS to the binary}
SRC=${SRC:?set SRC to the source tree}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_usage "what" "text on stderr" corpuslens-args...: exit status 2, the
# text once on stderr, the "Try" line, nothing on stdout.
expect_usage() {
    local what=$1 text=$2
    shift 2
    "$CL" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    [ "$rc" = 2 ] || fail "$what: exit status $rc, expected 2 ($(cat "$T/err"))"
    local n
    n=$(grep -cF -- "$text" "$T/err")
    [ "$n" = 1 ] || fail "$what: expected '$text' once on stderr, got $n: $(cat "$T/err")"
    grep -qF "Try 'corpuslens ${TRY:-$1} --help'." "$T/err" || fail "$what: no 'Try' line: $(cat "$T/err")"
    [ -s "$T/out" ] && fail "$what: wrote to stdout: $(cat "$T/out")"
    return 0
}

# ---- the errors, once ----
expect_usage "missing value" "corpuslens predict: --top needs a value" predict --model m.h5 x --top
expect_usage "missing value (=)" "--top needs a value" predict --model m.h5 --top= x
expect_usage "out of range" "corpuslens predict: --top: -1 is out of range 0..2097152" predict --model m.h5 --top -1 x
expect_usage "out of range (=)" "--top: 2097153 is out of range 0..2097152" predict --model m.h5 --top=2097153 x
expect_usage "not an integer" "--top: '3x' is not an integer" predict --model m.h5 --top 3x x
expect_usage "overflow" "--seed: 99999999999999999999 is out of range 0..9223372036854775807" \
    generate --model m.h5 --seed 99999999999999999999
expect_usage "double out of range" "--temperature: 0 is out of range 1e-06..100" generate --model m.h5 --temperature 0
expect_usage "double not a number" "--temperature: 'nan' is not a number" generate --model m.h5 --temperature nan
expect_usage "typo" "unknown option --tpo (did you mean --top?)" predict --model m.h5 --tpo 3 x
expect_usage "abbreviation" "unknown option --to (did you mean --top?)" predict --model m.h5 --to 3 x
expect_usage "far off" "unknown option --zzzzzz" predict --model m.h5 --zzzzzz x
grep -qF "did you mean" "$T/err" && fail "far off: suggested something: $(cat "$T/err")"
expect_usage "unknown short" "unknown option -x" predict --model m.h5 -x y
expect_usage "flag with a value" "--last takes no value" capture --model m.h5 -o a.h5 --last=1 x
expect_usage "choice" "--pool: 'max' is not one of mean, last" embed-sim --model m.h5 --hook embed --pool max a b
expect_usage "list" "--weights: '1,a' is not a comma-separated list of numbers" reduce s.h5 --weights 1,a -o d
expect_usage "positional" "unexpected argument 'y'" predict --model m.h5 x y
expect_usage "short missing value" "--output needs a value" init --vocab-from c.txt -o

# ---- --opt=value and --opt value, options before and after the text ----
printf 'And only love, and only lies.\n' >"$T/c.txt"
"$CL" init --config n_layer=1,n_head=2,n_embd=16,block_size=16 --vocab-from "$T/c.txt" -o "$T/m.h5" >/dev/null ||
    fail "init"
"$CL" predict --model "$T/m.h5" --top 3 "And only" >"$T/a" || fail "predict --opt value"
"$CL" predict "And only" --top=3 --model="$T/m.h5" >"$T/b" || fail "predict --opt=value"
[ "$(wc -l <"$T/a")" = 3 ] || fail "--top 3 printed $(wc -l <"$T/a") lines"
cmp -s "$T/a" "$T/b" || fail "--opt=value and --opt value differ"
"$CL" predict --model "$T/m.h5" --top 2 -- "--top" >"$T/c" 2>"$T/err"
grep -qF "needs a value" "$T/err" && fail "after --, '--top' was taken for an option"
"$CL" generate --model "$T/m.h5" -n 5 --seed 3 >"$T/g1" || fail "generate -n"
"$CL" generate --model="$T/m.h5" --chars=5 --seed=3 >"$T/g2" || fail "generate --chars="
cmp -s "$T/g1" "$T/g2" || fail "-n and --chars differ"

# ---- every command's table, through its --help ----
cmds=$("$CL" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ "$(echo "$cmds" | wc -w)" -ge 17 ] || fail "corpuslens --help lists $(echo "$cmds" | wc -w) commands"
# A file may hold more than one table: a table whose opening line says
# /* table of: ARGS */ is the one of `corpuslens ARGS --help` (a variant such
# as `train --task parens`); any other is the command's own.
# tables FILE CMD: one line per option, "ARGS<TAB>name" (hidden ones left out)
tables() {
    awk -v c="$2" '
        /cli_option [a-z_]*\[\] = \{/ {
            args = c
            if (match($0, /table of: [^*]*/)) { args = substr($0, RSTART + 10, RLENGTH - 10); sub(/ +$/, "", args) }
            on = 1
        }
        on && /CLI_OPT_[A-Z]+\("/ && !/\/\* hidden/ { n = $0; sub(/.*CLI_OPT_[A-Z]+\("/, "", n); sub(/".*/, "", n); print args "\t" n }
        on && /CLI_END/ { on = 0 }' "$1"
}
# check_help "ARGS" names...: ARGS --help lists every name; a typo of the
# first is refused with the did-you-mean text
check_help() {
    local args=$1 c=${1%% *}
    shift
    $CL $args --help >"$T/help" 2>"$T/err" || fail "$args --help: exit status $?"
    [ -s "$T/err" ] && fail "$args --help wrote to stderr: $(cat "$T/err")"
    head -1 "$T/help" | grep -q "^usage: .*corpuslens $args" || fail "$args --help: no usage line: $(head -1 "$T/help")"
    $CL $args -h | cmp -s - "$T/help" || fail "$args: -h and --help differ"
    for o in "$@"; do
        grep -qE -- "(^|[ ,])--$o( |$)" "$T/help" || fail "$args --help does not list --$o"
    done
    if [ $# -gt 0 ]; then
        # shellcheck disable=SC2086
        TRY=$args expect_usage "$args typo" "unknown option --${1}x (did you mean --$1?)" $args "--${1}x" 1
    else
        TRY=$args expect_usage "$args unknown" "unknown option --bogus" $args --bogus
    fi
}
variants=0
for c in $cmds; do
    file="$SRC/src/cli/cmd_${c//-/_}.c"
    [ -f "$file" ] || { fail "$c: no $file"; continue; }
    tables "$file" "$c" >"$T/tables"
    [ -s "$T/tables" ] || echo "$c	" >"$T/tables" # a command without options
    while IFS= read -r args; do
        [ "$args" = "$c" ] || variants=$((variants + 1))
        # shellcheck disable=SC2046
        check_help "$args" $(awk -F '\t' -v a="$args" '$1 == a && $2 != "" {print $2}' "$T/tables")
    done < <(cut -f1 "$T/tables" | awk '!seen[$0]++')
done
# the variants with their own table: train --task parens, demo-corpus parens
[ "$variants" -ge 2 ] || fail "found $variants command variants with their own table, expected 2 or more"
TRY="train --task parens" expect_usage "train --task" "--task: 'lm' is not one of parens" train --task lm -o m.h5
expect_usage "lens --attn-svg alone" "--attn-svg goes with --parens" lens --model m.h5 --attn-svg a.svg x
expect_usage "ablate --data with --corpus" "--data takes no --corpus" ablate --model m.h5 --data d.tsv --corpus c.h5
expect_usage "ablate --split" "--split: 'dev' is not one of train, val, test" ablate --model m.h5 --data d.tsv --split dev

# ---- one message prefix: every line a command writes on stderr starts "corpuslens CMD: " ----
# (the "Try 'corpuslens CMD --help'." line of a usage error goes with the line before it)
# prefixed WHAT CMD: every line of $T/err but the Try line starts "corpuslens CMD: "
prefixed() {
    local bad
    bad=$(grep -v "^Try 'corpuslens $2 --help'\.\$" "$T/err" | grep -v "^corpuslens $2: ")
    [ -s "$T/err" ] || fail "$1: nothing on stderr"
    [ -z "$bad" ] || fail "$1: stderr lines without 'corpuslens $2: ': $bad"
    return 0
}
N=$T/no/such/file
# one line per command: a run that fails on a file that does not exist (or cannot be written)
while IFS='|' read -r c args; do
    [ -n "$c" ] || continue
    # shellcheck disable=SC2086
    timeout 60 "$CL" $c $args >/dev/null 2>"$T/err"
    rc=$?
    [ "$rc" = 1 ] || fail "$c with a missing file: exit status $rc, expected 1: $(cat "$T/err")"
    grep -qF "$N" "$T/err" || fail "$c: the message does not name $N: $(cat "$T/err")"
    prefixed "$c with a missing file" "$c"
    echo "$c" >>"$T/checked"
    # a bad option: the usage error and its Try line
    "$CL" $c --no-such-option >/dev/null 2>"$T/err"
    prefixed "$c --no-such-option" "$c"
done <<EOF2
init|--config n_layer=1,n_head=2,n_embd=16,block_size=16 --vocab-from $N -o $T/p.h5
import|$N --corpus $N -o $T/p.h5
inspect|$N
predict|--model $N x
generate|--model $N
capture|--model $N -o $T/p.h5 x
demo-corpus|-o $N
prepare|$N --len 3 --prompts 2 -o $T/p.h5
train|--corpus $N --steps 1 --batch 1 --ctx 4 -o $T/p.h5
scan|--model $N --corpus $N -o $T/p.h5
reduce|$N -o $T/p
tune|$N
run|$N
lens|--model $N x
ablate|--model $N --corpus $N -o $T/p.h5
similar|$N --corpus $N --prompt x --block 0 --threshold 0.5
embed-sim|--model $N --hook embed a b
index|--model $N --corpus $N -o $T/p.h5
explain|--index $N --corpus $N --model $N x
serve|--index $N --corpus $N --model $N --port 0
EOF2
for c in $cmds; do grep -qx "$c" "$T/checked" || fail "$c: no missing-file case in the prefix check"; done
# progress and timing lines of commands that work (scan, index, explain, train, generate's progress)
for i in 1 2 3 4 5; do printf 'And only love, and only lies; and only the end of it all.\n'; done >"$T/p.txt"
"$CL" init --config n_layer=1,n_head=2,n_embd=16,block_size=16 --vocab-from "$T/p.txt" -o "$T/pm.h5" >/dev/null ||
    fail "init"
"$CL" prepare "$T/p.txt" --len 3 --prompts 4 --vocab-from "$T/pm.h5" -o "$T/pc.h5" >/dev/null || fail "prepare"
"$CL" scan --model "$T/pm.h5" --corpus "$T/pc.h5" --prefilter 0.5 --bin-width 0.05 -o "$T/ps.h5" >/dev/null 2>"$T/err" ||
    fail "scan: $(cat "$T/err")"
prefixed "scan's progress and timing" scan
"$CL" index --model "$T/pm.h5" --corpus "$T/pc.h5" --sketch-dim 0 -o "$T/pi.h5" >/dev/null 2>"$T/err" ||
    fail "index: $(cat "$T/err")"
prefixed "index's progress and timing" index
"$CL" explain --index "$T/pi.h5" --corpus "$T/pc.h5" --model "$T/pm.h5" --thresholds 0.5 --weights 1 "And" \
    >/dev/null 2>"$T/err" || fail "explain: $(cat "$T/err")"
prefixed "explain's timing" explain
"$CL" explain --index "$T/pi.h5" --corpus "$T/pc.h5" --model "$T/pm.h5" --thresholds 0.5 --weights 1 \
    --passage "And only" >/dev/null 2>"$T/err" || fail "explain --passage: $(cat "$T/err")"
prefixed "explain --passage's timing" explain
"$CL" train --corpus "$T/p.txt" --init "$T/pm.h5" --steps 2 --batch 2 --ctx 8 --eval-every 0 -o "$T/pt.h5" \
    >/dev/null 2>"$T/err" || fail "train: $(cat "$T/err")"
grep -q "^corpuslens train: step 2/2 " "$T/err" || fail "train printed no progress line: $(cat "$T/err")"
prefixed "train's progress" train
"$CL" generate --model "$T/pm.h5" -n 1000 --seed 1 >/dev/null 2>"$T/err" || fail "generate: $(cat "$T/err")"
grep -q "^corpuslens generate: 1000/1000 " "$T/err" || fail "generate printed no progress line: $(cat "$T/err")"
prefixed "generate's progress" generate

# ---- MPI only as one of several ranks ----
# A bogus point-to-point component makes MPI_Init fail: a command on one
# process must not call it, whatever the command (index, lens --prompts and
# a job's multi-rank stages too: several one-rank jobs starting together on
# one node raced on Open MPI's session directory); a command started "by
# mpirun" as one of several ranks (its environment) must (negative controls:
# they fail). Their inputs are made first.
"$CL" prepare "$T/c.txt" --len 3 --prompts 2 -o "$T/ci.h5" >/dev/null 2>&1 || fail "prepare for index"
"$CL" index --model "$T/m.h5" --corpus "$T/ci.h5" --sketch-dim 0 -o "$T/i.h5" >/dev/null 2>&1 || fail "index"
export OMPI_MCA_pml=corpuslens_no_such_component
"$CL" index --add-sketch "$T/i.h5" --sketch-dim 4 >/dev/null 2>"$T/err" ||
    fail "index --add-sketch without mpirun started MPI: $(tail -3 "$T/err")"
"$CL" explain --index "$T/i.h5" --corpus "$T/ci.h5" --model "$T/m.h5" --thresholds 0.5 --weights 1 "And" \
    >/dev/null 2>"$T/err" || fail "explain without mpirun started MPI: $(tail -3 "$T/err")"
grep -qF "sketch (k = 4)" "$T/err" || fail "explain did not use the added sketch: $(tail -3 "$T/err")"
"$CL" index --model "$T/m.h5" --corpus "$T/ci.h5" -o "$T/i2.h5" >/dev/null 2>"$T/err" ||
    fail "index (the build) on one process started MPI: $(tail -3 "$T/err")"
"$CL" predict --model "$T/m.h5" --top 2 "And" >"$T/out" 2>"$T/err" ||
    fail "predict without mpirun started MPI: $(tail -3 "$T/err")"
"$CL" prepare "$T/c.txt" --len 3 --prompts 2 -o "$T/c.h5" >/dev/null 2>"$T/err" ||
    fail "prepare (HDF5 writes) without mpirun started MPI: $(tail -3 "$T/err")"
if OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$CL" predict --model "$T/m.h5" "And" >/dev/null 2>&1; then
    fail "negative control: predict 'under mpirun' did not start MPI"
fi
for launcher in "PMI_SIZE=2 PMI_RANK=0" "PMIX_RANK=0" "SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=2"; do
    if env $launcher "$CL" predict --model "$T/m.h5" "And" >/dev/null 2>&1; then
        fail "negative control: predict under '$launcher' did not start MPI"
    fi
done
SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=1 "$CL" predict --model "$T/m.h5" "And" >/dev/null 2>"$T/err" ||
    fail "predict as a one-task Slurm step started MPI: $(tail -3 "$T/err")"
"$CL" lens --model "$T/m.h5" --prompts "$T/c.h5" >/dev/null 2>"$T/err" ||
    fail "lens --prompts on one process started MPI: $(tail -3 "$T/err")"
# a job on one process: train, an alternative seed (the Slurm array task of
# one rank), scan, ablate, reduce with a compare model; the same under
# `mpirun -n 1` (its environment) and as a one-task Slurm step
cat >"$T/j.ini" <<'INI'
[corpus]
generate = demo
chars = 3000
len = 4
prompts = 6
[train]
config = n_layer=1,n_embd=16,n_head=2,block_size=8
steps = 2
batch = 2
ctx = 8
eval_every = 0
checkpoint_every = 1
[alternatives]
seeds = 2
[scan]
prefilter = 0.5
bin_width = 0.05
[ablate]
max = 4
[reduce]
thresholds = 0.8
weights = 1
[output]
dir = ${CLI_T}/job
INI
for launcher in "" "OMPI_COMM_WORLD_SIZE=1 OMPI_COMM_WORLD_RANK=0 PMIX_RANK=0" "SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=1"; do
    env $launcher CLI_T="$T" "$CL" run "$T/j.ini" --force >"$T/out" 2>"$T/err" ||
        fail "run (every stage) on one process${launcher:+ ($launcher)} started MPI: $(tail -3 "$T/err")"
done
grep -q "7 stages run" "$T/out" || fail "run: not every stage ran: $(tail -3 "$T/out")"
if OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 CLI_T="$T" "$CL" run "$T/j.ini" --force >/dev/null 2>&1; then
    fail "negative control: run 'as one of 2 ranks' did not start MPI"
fi
unset OMPI_MCA_pml

[ "$failures" = 0 ] && echo "cli_options: all checks passed"
exit $((failures > 0))
