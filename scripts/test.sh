#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, creates the unprivileged
# test user with subordinate ids, then runs every test. Run as root (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

TEST_USER=${UNROOT_TEST_USER:-unroot-test}

if [ "$(id -u)" = 0 ]; then
  mapfile -t pkgs < <(grep -v '^#' scripts/apt-packages.txt | sed '/^$/d')
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
  fi
  grep -q "^$TEST_USER:" /etc/subuid || echo "$TEST_USER:200000:65536" >>/etc/subuid
  grep -q "^$TEST_USER:" /etc/subgid || echo "$TEST_USER:200000:65536" >>/etc/subgid
  # slirp4netns and pasta open /dev/net/tun as the test user; some containers create it 0600.
  if [ -c /dev/net/tun ]; then chmod 0666 /dev/net/tun; fi
  export UNROOT_TEST_USER=$TEST_USER
fi

go vet ./...
# test/cluster runs on its own, after the rest: it and test/e2e both run
# programs as the test user and count what outlives them, so running them side
# by side (go test runs packages in parallel) would count each other's.
mapfile -t pkgs < <(go list ./... | grep -v '/test/cluster$')
go test -count=1 -timeout 30m "$@" "${pkgs[@]}"
go test -count=1 -timeout 15m "$@" ./test/cluster
# Every package in whose code or tests goroutines run, again under the race
# detector (it needs cgo: gcc and libc6-dev above); see scripts/race-packages.sh.
mapfile -t race_pkgs < <(scripts/race-packages.sh)
CGO_ENABLED=1 go test -race -count=1 -timeout 20m "$@" "${race_pkgs[@]}"
