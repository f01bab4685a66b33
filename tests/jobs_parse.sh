#!/usr/bin/env bash
# corpuslens run: job file refusals. Each bad job must exit nonzero, print
# "FILE:LINE: message" on stderr, and create nothing; a good job's values
# come back expanded through --get.
# Env: CORPUSLENS (binary).
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# a valid job; the cases below edit copies of it
cat >"$T/good.ini" <<'INI'
; a comment
[corpus]
path = ${JOBDIR}/c.txt
len = 4
prompts = 3

[model]
path = ${JOBS_TEST_MODEL:-m.h5}

[scan]
hook = mlp_out
prefilter = 0.7

[reduce]
thresholds = 0.9, 0.9
weights = 1 1
compare_models = a.h5, b.h5

[output]
dir = ${T_OUT}/out
INI

# refuse NAME WANT [WANT2]: job $T/NAME.ini must fail with WANT (and WANT2) on stderr
refuse() {
    local name=$1
    shift
    if T_OUT=$T "$CL" run "$T/$name.ini" --dry-run >"$T/stdout" 2>"$T/stderr"; then
        fail "$name: accepted"
        return
    fi
    for want in "$@"; do
        grep -qF -- "$want" "$T/stderr" || fail "$name: stderr lacks '$want': $(cat "$T/stderr")"
    done
    [ -e "$T/out" ] && fail "$name: created the output folder"
    return 0
}
# mk NAME: a job from stdin
mk() { cat >"$T/$1.ini"; }

mk unknown-key <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[model]
path = m.h5
[scan]
hok = mlp_out
[output]
dir = o
INI
refuse unknown-key "unknown-key.ini:8: unknown key 'hok' in [scan] (known: hook, prefilter"

mk missing-len <<'INI'
[corpus]
path = c.txt
prompts = 3
[model]
path = m.h5
[output]
dir = o
INI
refuse missing-len "missing-len.ini:1: [corpus] has no 'len' (required)"

mk missing-output <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[model]
path = m.h5
INI
refuse missing-output "missing-output.ini:6: missing section [output] with 'dir = ...'"

mk no-model <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[output]
dir = o
INI
refuse no-model "no-model.ini:6: missing section [model] (path = a model file, or checkpoint = a .pt to import) or [train]"

mk train-missing <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[train]
steps = 10
[output]
dir = o
INI
refuse train-missing "train-missing.ini:5: [train] has no 'batch' (required)" \
    "train-missing.ini:5: [train] has no 'ctx' (required)"

mk bad-values <<'INI'
[corpus]
path = c.txt
len = 0
prompts = three
[model]
path = m.h5
[scan]
prefilter = 1.5
bin_width = 0.01x
[reduce]
thresholds = 0.9, abc
[output]
dir = o
INI
refuse bad-values "bad-values.ini:3: corpus.len: '0' is not an integer in [1, 256]" \
    "bad-values.ini:4: corpus.prompts: 'three' is not an integer" \
    "bad-values.ini:8: scan.prefilter: '1.5' is not a number in [-1," \
    "bad-values.ini:9: scan.bin_width: '0.01x' is not a number" \
    "bad-values.ini:11: reduce.thresholds: item 2 'abc' is not a number"

mk bad-config <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[train]
config = n_layer=2,n_embed=64
steps = 1
batch = 1
ctx = 4
[output]
dir = o
INI
refuse bad-config "bad-config.ini:6: train.config:"

mk unset-var <<'INI'
[corpus]
path = ${CORPUSLENS_TEST_SURELY_UNSET}/c.txt
len = 4
prompts = 3
[model]
path = m.h5
[output]
dir = o
INI
refuse unset-var "unset-var.ini:2: corpus.path: variable \${CORPUSLENS_TEST_SURELY_UNSET} is not set"

mk syntax <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
just some words
[model
path = m.h5
[output]
dir = o
INI
refuse syntax "syntax.ini:5: expected '[section]' or 'key = value'" "syntax.ini:6: '[' without ']'"

mk twice <<'INI'
[corpus]
path = c.txt
len = 4
len = 5
prompts = 3
[model]
path = m.h5
[output]
dir = o
INI
refuse twice "twice.ini:4: corpus.len is set twice (first on line 3)"

mk section <<'INI'
top = 1
[corpus]
path = c.txt
len = 4
prompts = 3
[model]
path = m.h5
[scna]
hook = x
[output]
dir = o
INI
refuse section "section.ini:1: 'top' is outside any section" "section.ini:8: unknown section [scna]"

mk exclusive <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
prompt_file = p.txt
[model]
path = m.h5
[train]
steps = 3
[output]
dir = o
INI
refuse exclusive "exclusive.ini:5: corpus.prompt_file and corpus.prompts exclude each other" \
    "exclusive.ini:8: [train] and [model] exclude each other"

{
    printf '[corpus]\npath = '
    printf 'x%.0s' $(seq 1 250)
    printf '\nlen = 4\nprompts = 3\n[model]\npath = m.h5\n[output]\ndir = o\n'
} >"$T/long.ini"
refuse long "long.ini:2: line too long"

mk counts <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[model]
path = m.h5
[reduce]
thresholds = 0.9, 0.9
weights = 1
[output]
dir = o
INI
refuse counts "counts.ini:9: reduce.weights has 1 numbers but reduce.thresholds has 2"

# [alternatives] seeds: the same seed twice, however written, is refused (issue 21)
mk dup-seeds <<'INI'
[corpus]
path = c.txt
len = 4
prompts = 3
[train]
steps = 2
batch = 2
ctx = 4
[alternatives]
seeds = 1, 1, 01
[output]
dir = o
INI
refuse dup-seeds "dup-seeds.ini:10: alternatives.seeds: item 2 '1' is seed 1 again (item 1 '1')"
sed -i 's/^seeds = .*/seeds = 7, 3, 007/' "$T/dup-seeds.ini"
refuse dup-seeds "dup-seeds.ini:10: alternatives.seeds: item 3 '007' is seed 7 again (item 1 '7')"
# an alternative with the seed of the job's own model is that model again (noise floor 0)
sed -i 's/^seeds = .*/seeds = 7, 1337/' "$T/dup-seeds.ini"
refuse dup-seeds "dup-seeds.ini:10: alternatives.seeds: seed 1337 is the seed the job's own model is trained with (train's default seed)"
sed -i 's/^seeds = .*/seeds = 3, 7/; s/^steps = 2$/steps = 2\nseed = 7/' "$T/dup-seeds.ini"
refuse dup-seeds "alternatives.seeds: seed 7 is the seed the job's own model is trained with (train.seed)"
sed -i '/^seed = 7$/d' "$T/dup-seeds.ini"
# control: distinct seeds are accepted, one training stage each
sed -i 's/^seeds = .*/seeds = 7, 3, 70/' "$T/dup-seeds.ini"
if T_OUT=$T "$CL" run "$T/dup-seeds.ini" --dry-run >"$T/stdout" 2>"$T/stderr"; then
    for s in 7 3 70; do grep -qF "model-seed$s.h5" "$T/stdout" || fail "distinct seeds: no model-seed$s.h5 in the plan"; done
else
    fail "distinct seeds refused: $(cat "$T/stderr")"
fi

refuse missing-file-does-not-exist "job file: cannot open"
"$CL" run >/dev/null 2>"$T/stderr" && fail "run without a job accepted"
grep -qF "no job file given" "$T/stderr" || fail "no job: $(cat "$T/stderr")"
"$CL" run "$T/good.ini" --stages scan,bogus >/dev/null 2>"$T/stderr" && fail "bad --stages accepted"
grep -qF "unknown stage 'bogus'" "$T/stderr" || fail "bad --stages: $(cat "$T/stderr")"

# ---- the good job: expansion through --get ----
get() { T_OUT=$T "$CL" run "$T/good.ini" --get "$1"; }
[ "$(get corpus.path)" = "$(cd "$T" && pwd -P)/c.txt" ] || fail "\${JOBDIR}: $(get corpus.path)"
[ "$(get model.path)" = m.h5 ] || fail "\${X:-default}: $(get model.path)"
[ "$(JOBS_TEST_MODEL=/x/y.h5 get model.path)" = /x/y.h5 ] || fail "\${X:-default} with X set"
[ "$(get output.dir)" = "$T/out" ] || fail "output.dir: $(get output.dir)"
[ "$(get scan.bin_width)" = "" ] || fail "unset key not empty"
[ "$(get stages)" = "prepare scan reduce" ] || fail "stages: $(get stages)"
T_OUT=$T "$CL" run "$T/good.ini" --dry-run >"$T/stdout" 2>"$T/stderr" || fail "dry run: $(cat "$T/stderr")"
grep -qF -- "--thresholds 0.9,0.9 --weights 1,1 --compare-model a.h5 --compare-model b.h5" "$T/stdout" ||
    fail "reduce argv: $(cat "$T/stdout")"
[ -e "$T/out" ] && fail "--dry-run created the output folder"

[ "$failures" = 0 ] && echo "jobs_parse: all checks passed"
exit $((failures > 0))
