#!/usr/bin/env bash
# The documentation test: what README.md's Quick start shows is what happens, on a
# clean clone. Run by scripts/test.sh (so in CI); last line "docs: N passed, M failed".
#
#   scripts/check-docs.sh
#
# What it does:
#   1. `git clone`s this repository (HEAD: what is committed, nothing else) into a
#      temporary directory;
#   2. runs every ```sh block of README.md's "## Quick start" section in order,
#      each command from the clone's root, and checks the documented outputs;
#   3. stops the service (SIGTERM; it must exit 0), then runs the demo's short mode
#      (DEMO_EXIT_WHEN_DONE=1 scripts/demo.sh) in the clone: it must close the loop
#      (alert → shift → resolved) within DEMO_TIMEOUT seconds (default 300).
#
# Conventions in README.md's Quick start (the markers are HTML comments, invisible
# when rendered):
#   - `<!-- doc-test: skip (why) -->` on the line before a block: not run (the
#     machine prerequisites; scripts/test.sh itself).
#   - `<!-- doc-test: background, ready URL -->`: the block runs in the background
#     (the service); the next block starts once URL answers 2xx.
#   - In a block, a line ending in `\` continues on the next line. A comment line
#     right after a command is that command's expected output (one line); `...`
#     in it stands for any text. Any other comment line is narration.
#   - A checked command that only reads (no -d/--data/-X, not `replay`) is retried
#     for up to 20 s until its output matches: the worker acts asynchronously. A
#     command that changes something runs exactly once.
#
# Build cache: the clone's `target/` is a symlink to this repository's `target/`.
# A clean clone would otherwise compile every dependency again in release mode
# for `cargo run --release` (several minutes on 2 cores, measured in the report
# of scripts/test.sh's first run), and the demo's `cargo build --release` then
# reuses the same artifacts. Only the router's own crate is compiled again (its
# path differs). Likewise the demo uses this repository's tool venv
# (DEPLOY_VENV=.venv-deploy, made by scripts/setup.sh) instead of downloading
# the tools again.
#
# Needs: git, curl, cargo, and what scripts/setup.sh installs. Port 9095 must be free.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_TIMEOUT=${DEMO_TIMEOUT:-300}
READY_TIMEOUT=${READY_TIMEOUT:-1800}   # the background block may compile a release build first
RETRY_SECONDS=20

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }

work=$(mktemp -d)
bg_pid=""
cleanup() {
  if [[ -n $bg_pid ]] && kill -0 "$bg_pid" 2>/dev/null; then
    kill -TERM -- "-$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if curl -s -o /dev/null --max-time 2 http://127.0.0.1:9095/; then
  fail "something already listens on 127.0.0.1:9095, which the Quick start uses: stop it first"
  echo "docs: $passed passed, $failed failed"
  exit 1
fi

clone=$work/clone
git clone -q "$repo" "$clone"
mkdir -p "$repo/target"
ln -s "$repo/target" "$clone/target"
echo "== clean clone of $(git -C "$clone" rev-parse --short HEAD) in $clone (target/ shared with $repo)"

# The Quick start section: from its heading to the next "## " heading.
section=$(awk '/^## Quick start/{on=1; next} on && /^## /{exit} on' "$clone/README.md")
[[ -n $section ]] || { fail "README.md has no \"## Quick start\" section"; echo "docs: $passed passed, $failed failed"; exit 1; }

# Glob from an expected-output line: glob characters literal, "..." = anything.
to_glob() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    if [[ ${s:i:3} == "..." ]]; then out+="*"; i=$((i + 2)); continue; fi
    case $c in
      '*' | '?' | '[' | ']' | '\') out+="\\$c" ;;
      *) out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

# run_check COMMAND EXPECTED: run from the clone's root; compare if EXPECTED is set.
run_check() {
  local cmd=$1 expected=$2 out rc glob deadline readonly=1
  case " $cmd " in
    *" -d "* | *" --data"* | *" -X "* | *" replay "*) readonly=0 ;;
  esac
  deadline=$((SECONDS + RETRY_SECONDS))
  while true; do
    rc=0
    out=$(cd "$clone" && bash -o pipefail -c "$cmd" 2>"$work/stderr") || rc=$?
    if [[ -z $expected ]]; then
      if [[ $rc -eq 0 ]]; then pass "$cmd"; else fail "$cmd exited $rc"; sed 's/^/    /' "$work/stderr" | tail -20; fi
      return 0
    fi
    glob=$(to_glob "$expected")
    # shellcheck disable=SC2053  # the right-hand side is a glob on purpose
    if [[ $rc -eq 0 && $out == $glob ]]; then
      pass "$cmd → $expected"
      return 0
    fi
    if ((readonly == 0 || SECONDS >= deadline)); then
      fail "$cmd (exit $rc)"
      echo "    expected: $expected"
      echo "    got:      ${out:0:2000}"
      sed 's/^/    stderr: /' "$work/stderr" | tail -10
      return 0
    fi
    sleep 0.5
  done
}

# Walk the section: markers, blocks, commands, expected outputs.
directive=""
in_block=0
block_directive=""
cmd=""
pending=""      # the last command run, waiting for a possible expected-output line
flush_pending() { if [[ -n $pending ]]; then run_check "$pending" ""; pending=""; fi; }
while IFS= read -r line; do
  if ((in_block == 0)); then
    if [[ $line =~ ^\<!--\ doc-test:\ (.*)\ --\>$ ]]; then
      directive=${BASH_REMATCH[1]}
    elif [[ $line == '```sh' ]]; then
      in_block=1; block_directive=$directive; directive=""; cmd=""; pending=""
      block_lines=()
    elif [[ -n ${line// /} ]]; then
      directive=""   # a marker applies to the block right below it
    fi
    continue
  fi
  if [[ $line == '```' ]]; then
    in_block=0
    case $block_directive in
      skip*)
        echo "skipped: block ($block_directive): ${block_lines[*]:0:1}" ;;
      background*)
        url=$(sed -n 's/.*ready \([^ ]*\).*/\1/p' <<<"$block_directive")
        body=$(printf '%s\n' "${block_lines[@]}")
        echo "== background: $body (ready: $url)"
        (cd "$clone" && exec setsid bash -c "$body") >"$work/background.log" 2>&1 &
        bg_pid=$!
        deadline=$((SECONDS + READY_TIMEOUT))
        until curl -sf -o /dev/null "$url"; do
          if ! kill -0 "$bg_pid" 2>/dev/null || ((SECONDS >= deadline)); then
            fail "background block \"$body\": $url never answered"; tail -30 "$work/background.log" | sed 's/^/    /'
            echo "docs: $passed passed, $failed failed"
            exit 1
          fi
          sleep 1
        done
        pass "background block \"$body\": $url answers" ;;
      *)
        for l in "${block_lines[@]}"; do
          if [[ -n $cmd ]]; then   # continuation of a command
            cmd+=$'\n'$l
            [[ $l == *\\ ]] || { pending=$cmd; cmd=""; }
            continue
          fi
          if [[ $l =~ ^[[:space:]]*#\ ?(.*)$ ]]; then
            if [[ -n $pending ]]; then run_check "$pending" "${BASH_REMATCH[1]}"; pending=""; fi
            continue
          fi
          flush_pending
          [[ -n ${l// /} ]] || continue
          if [[ $l == *\\ ]]; then cmd=$l; else pending=$l; fi
        done
        flush_pending ;;
    esac
    continue
  fi
  block_lines+=("$line")
done <<<"$section"

# The service stops cleanly on SIGTERM (what Kubernetes and Ctrl-C send).
if [[ -n $bg_pid ]]; then
  kill -TERM -- "-$bg_pid" 2>/dev/null || true
  rc=0; wait "$bg_pid" || rc=$?
  if [[ $rc -eq 0 ]]; then pass "the service exits 0 on SIGTERM"; else fail "the service exited $rc on SIGTERM"; tail -20 "$work/background.log" | sed 's/^/    /'; fi
  bg_pid=""
fi

# The demo's short mode, in the clone.
echo "== DEMO_EXIT_WHEN_DONE=1 scripts/demo.sh (at most ${DEMO_TIMEOUT}s)"
rc=0
(cd "$clone" && DEPLOY_VENV="$repo/.venv-deploy" DEMO_EXIT_WHEN_DONE=1 timeout "$DEMO_TIMEOUT" scripts/demo.sh) >"$work/demo.log" 2>&1 || rc=$?
if [[ $rc -eq 0 ]] && grep -q 'The loop is closed' "$work/demo.log"; then
  pass "scripts/demo.sh closed the loop (alert → shift → resolved)"
  grep -E '^  \((AlertRouterDown|ABTestTrafficImbalance) pending' "$work/demo.log" | sed 's/^/    narrated: /' || true
else
  fail "scripts/demo.sh (exit $rc; 124 = timeout)"; tail -40 "$work/demo.log" | sed 's/^/    /'
fi

echo "docs: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
