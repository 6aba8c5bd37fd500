#!/usr/bin/env bash
# Prints the packages with tests in which goroutines run (a "go" statement in
# the package's code or in its tests): scripts/test.sh runs them under -race.
# The list is found, not kept, so a new package is never missed. The harnesses
# under test/ are left out: what they test is the built binary, not their code.
set -euo pipefail
cd "$(dirname "$0")/.."
go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{range .GoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .TestGoFiles}} {{$.Dir}}/{{.}}{{end}}{{range .XTestGoFiles}} {{$.Dir}}/{{.}}{{end}}{{end}}' ./... |
  while read -r pkg files; do
    case $pkg in */test/*) continue ;; esac
    if [ -n "${files:-}" ] && grep -qE '^[[:space:]]*go [[:alnum:]_(]' $files; then
      echo "$pkg"
    fi
  done
