#!/usr/bin/env bash
# Runs every go fuzz target (func FuzzX in a _test.go file) for a short time, so a
# target that finds a crasher fails CI. Go writes each crasher to
# PKG/testdata/fuzz/FuzzX/<hash>: commit it with the fix, and it stays a seed
# that plain `go test` runs every time.
#
#   scripts/fuzz.sh [-quick] [-t DURATION] [PKG_DIR...]
#
# DURATION is per target (default 1s; UNROOT_FUZZTIME overrides). Each package's
# test binary is built once, then run per target. By default it is built with
# the coverage instrumentation that guides the fuzzer; that build recompiles the
# standard library and every dependency (gVisor included), 1-2 CPU-minutes on a
# fresh machine. -quick (what .ci/run uses) builds the plain test binaries that
# scripts/test.sh has just compiled and fuzzes without coverage guidance: seeds,
# crashers kept as seeds, and random mutations of them, about a minute in all.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

fuzztime=${UNROOT_FUZZTIME:-1s}
guided=1
while [ $# -gt 0 ]; do
  case "$1" in
  -quick) guided=0; shift ;;
  -t) fuzztime=$2; shift 2 ;;
  *) break ;;
  esac
done

if [ $# -gt 0 ]; then
  dirs=("$@")
else
  mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz[A-Z0-9_a-z]*(f \*testing.F)' . |
    xargs -n1 dirname | sort -u)
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
failed=()
total=0
start=$SECONDS
for d in "${dirs[@]}"; do
  mapfile -t targets < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$d"/*_test.go | sort -u)
  [ ${#targets[@]} -gt 0 ] || continue
  exe=$bin/$(echo "$d" | tr '/.' '__').test
  if [ $guided = 1 ]; then
    # -fuzz at build time turns the coverage instrumentation on; the pattern only has to match.
    go test -c -o "$exe" -fuzz="^${targets[0]}\$" "$d"
  else
    go test -c -o "$exe" "$d"
  fi
  for t in "${targets[@]}"; do
    total=$((total + 1))
    kept=$(ls "$d/testdata/fuzz/$t" 2>/dev/null || true)
    # The binary runs in the package directory, as go test does: the seeds live in
    # its testdata/fuzz, and so will a new crasher.
    if ! (cd "$d" && "$exe" -test.run='^$' -test.fuzz="^$t\$" -test.fuzztime="$fuzztime" \
      -test.fuzzcachedir="$bin/cache" >"$bin/out" 2>&1); then
      # Go before 1.27 may fail a target that found nothing: on a loaded machine its
      # coordinator misses its own -fuzztime deadline and prints only "context
      # deadline exceeded" (go.dev/issue/75804). A finding always writes a crasher;
      # so with none written, that message alone and a clean replay of the corpus
      # (the seeds and every kept crasher), the target passes. (On such a
      # machine the coordinator may also say it is waiting for a worker it
      # stopped to go: news, not a finding.)
      if [ "$(ls "$d/testdata/fuzz/$t" 2>/dev/null || true)" = "$kept" ] &&
        [ "$(grep -cvE '^(fuzz: |warning: |--- FAIL: |FAIL$|[[:space:]]*context deadline exceeded$|waiting for fuzzing process to terminate\.\.\.$)' "$bin/out")" = 0 ] &&
        grep -qE '^[[:space:]]*context deadline exceeded$' "$bin/out" &&
        (cd "$d" && "$exe" -test.run="^$t\$" >/dev/null 2>&1); then
        echo "fuzz: $d $t: Go's fuzz coordinator missed its -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27); nothing was found and the corpus replays clean"
        continue
      fi
      cat "$bin/out"
      failed+=("$d $t")
    fi
  done
done
echo "fuzz: $total targets, ${fuzztime} each$([ $guided = 1 ] || echo ", unguided"), $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED %s (the crasher is in its testdata/fuzz; commit it with the fix)\n' "${failed[@]}"
  exit 1
fi
