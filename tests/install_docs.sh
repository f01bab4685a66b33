#!/usr/bin/env bash
# `cmake --install` installs the binary, the manual corpuslens(1) and the bash
# completion; both are generated from the option tables, so every option that
# a command's --help lists must appear in its section of the manual and in its
# completion (with a negative control: a made-up option must not). Also
# `corpuslens help CMD` and the "did you mean" of a misspelt command.
set -euo pipefail
: "${CORPUSLENS:?}" "${BUILD:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$tmp/p" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
bin=$tmp/p/bin/corpuslens man1=$tmp/p/share/man/man1/corpuslens.1
comp=$tmp/p/share/bash-completion/completions/corpuslens
for f in "$bin" "$man1" "$comp"; do [ -s "$f" ] || fail "not installed: $f"; done
"$bin" --version | grep -q '^corpuslens [0-9]' || fail "the installed binary does not run"

# the manual renders without a warning
warn=$(MANWIDTH=80 man -l --warnings "$man1" 2>&1 >"$tmp/man.txt") || fail "man -l failed"
[ -z "$warn" ] || fail "man warnings: $warn"

# options listed by --help, per command
cmds=$("$CORPUSLENS" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/{print $1}')
[ "$(echo "$cmds" | wc -w)" -ge 15 ] || fail "too few commands parsed from --help: $cmds"
section() { # the roff section of command $1, from its .SS line to the next .SS/.SH
  awk -v c="$1" '/^\.S[SH] /{on = ($0 == ".SS corpuslens " c)} on' "$man1"
}
checked=0
for c in $cmds; do
  opts=$("$CORPUSLENS" "$c" --help | grep -oE '^  (-[a-zA-Z], )?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+')
  sec=$(section "$c")
  [ -n "$sec" ] || fail "no section for $c in the manual"
  line=$(grep -E "^        $c\) opts='" "$comp") || fail "no completion for $c"
  for o in $opts; do
    # an option's own entry: ".B \-o, \-\-output FILE" (not a mention in a text)
    esc=${o//-/\\\\-}
    grep -qE -- "^\.B (\\\\-[a-zA-Z], )?$esc( |\$)" <<<"$sec" || fail "$c: $o is in --help but has no entry in the manual"
    grep -qE -- "[ ']$o( |')" <<<"$line" || fail "$c: $o is in --help but not in the completion"
    checked=$((checked + 1))
  done
  # negative control: an option nobody has
  if grep -qF -- '\-\-no\-such\-option' <<<"$sec" || grep -qF -- '--no-such-option' <<<"$line"; then
    fail "the check is blind: --no-such-option found for $c"
  fi
done
[ "$checked" -ge 100 ] || fail "only $checked options checked"
echo "manual and completion: $checked options of $(echo "$cmds" | wc -w) commands present"

# the completion works in bash
# shellcheck disable=SC1090
out=$(bash -c "source '$comp'; COMP_WORDS=(corpuslens expl); COMP_CWORD=1; _corpuslens; echo \${COMPREPLY[*]}")
[ "$out" = explain ] || fail "completing 'expl' gave '$out'"
out=$(bash -c "source '$comp'; COMP_WORDS=(corpuslens explain --ind); COMP_CWORD=2; _corpuslens; echo \${COMPREPLY[*]}")
[ "$out" = --index ] || fail "completing 'explain --ind' gave '$out'"

# help CMD = CMD --help; a misspelt command gets "did you mean"
diff <("$CORPUSLENS" help predict) <("$CORPUSLENS" predict --help) >/dev/null || fail "help predict differs from predict --help"
set +e
"$CORPUSLENS" explian >"$tmp/o" 2>"$tmp/e"; rc=$?
set -e
[ $rc -eq 2 ] || fail "a misspelt command exited $rc, not 2"
grep -q "did you mean 'explain'" "$tmp/e" || fail "no suggestion: $(cat "$tmp/e")"
set +e
"$CORPUSLENS" help nosuchthing >"$tmp/o" 2>"$tmp/e"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown command 'nosuchthing'" "$tmp/e" || fail "help of an unknown command: rc $rc, $(cat "$tmp/e")"
echo "install_docs: ok"
