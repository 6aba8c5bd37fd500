#!/usr/bin/env bash
# The benchmark suite in one command: sudo bench/run.sh [--quick] [more unroot-bench flags]
#
# Installs the peers and tools (Debian packages; RootlessKit v3.3.0 with
# `go install`, outside the repository), creates the unprivileged test user
# with subordinate ids, builds unroot and the harness, then measures unroot
# next to RootlessKit v3.3.0, RootlessKit 1.1.0 and the physical references
# and writes bench/results/latest.{md,svg,json}. Nothing is left running,
# even on Ctrl-C: the harness kills every process it started and removes the
# namespaces it made.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh: run as root (sudo bench/run.sh): it installs packages, creates the test user and makes the veth reference; every peer itself runs unprivileged" >&2
  exit 1
fi
command -v go >/dev/null || { echo "bench/run.sh: go not found; install Go 1.26 in /usr/local/go" >&2; exit 1; }

BENCH=${UNROOT_BENCH_DIR:-/opt/unroot-bench}
TEST_USER=${UNROOT_TEST_USER:-unroot-test}
RK3_VERSION=v3.3.0
B4N_VERSION=v0.4.2

# runc, libseccomp-dev, pkg-config and gcc: bypass4netns (cgo) and the OCI
# runtime that hands it each container's seccomp listener.
pkgs=(rootlesskit slirp4netns passt uidmap iperf3 wrk hyperfine nginx-light haproxy iproute2 procps util-linux
  runc libseccomp-dev pkg-config gcc)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a haproxy service; the bench runs its own.
  if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now haproxy >/dev/null 2>&1 || true
  fi
fi

if ! "$BENCH/rk3/rootlesskit" --version 2>/dev/null | grep -q "${RK3_VERSION#v}"; then
  echo "installing RootlessKit $RK3_VERSION into $BENCH/rk3"
  mkdir -p "$BENCH/rk3"
  # Outside the repository, so unroot's go.mod is not touched.
  (cd / && GOBIN="$BENCH/rk3" GOFLAGS=-mod=mod go install \
    "github.com/rootless-containers/rootlesskit/v3/cmd/rootlesskit@$RK3_VERSION" \
    "github.com/rootless-containers/rootlesskit/v3/cmd/rootlessctl@$RK3_VERSION")
fi

# bypass4netns, measured as its README runs it (bench/README.md); built
# outside the repository. A failed build leaves its rows n/a, not the run.
# (`go install` leaves its --version "<unknown>"; the module version is in
# the binary's build information.)
if ! go version -m "$BENCH/b4n/bypass4netns" 2>/dev/null | grep -q "bypass4netns[[:space:]]*$B4N_VERSION"; then
  echo "installing bypass4netns $B4N_VERSION into $BENCH/b4n"
  mkdir -p "$BENCH/b4n"
  (cd / && GOBIN="$BENCH/b4n" GOFLAGS=-mod=mod CGO_ENABLED=1 go install \
    "github.com/rootless-containers/bypass4netns/cmd/bypass4netns@$B4N_VERSION") ||
    echo "bench/run.sh: building bypass4netns failed; its rows will be n/a" >&2
fi

if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$TEST_USER"
fi
grep -q "^$TEST_USER:" /etc/subuid || echo "$TEST_USER:200000:65536" >>/etc/subuid
grep -q "^$TEST_USER:" /etc/subgid || echo "$TEST_USER:200000:65536" >>/etc/subgid

# unroot answers as rootlesskit through a link, so it takes the same flags
# as the peers. A failed build leaves unroot's rows n/a (and the run fails).
rm -rf "$BENCH/unroot"
mkdir -p "$BENCH/unroot"
# Static, as README.md builds it: no dynamic loader at each of the two Go
# start-ups a launch costs (launcher and namespace init).
if CGO_ENABLED=0 go build -o "$BENCH/unroot/unroot" ./cmd/unroot; then
  ln -s unroot "$BENCH/unroot/rootlesskit"
  ln -s unroot "$BENCH/unroot/rootlessctl"
else
  echo "bench/run.sh: building ./cmd/unroot failed; unroot's figures will be n/a" >&2
fi
chmod -R a+rX "$BENCH"
go build -o "$BENCH/unroot-bench" ./bench/cmd/unroot-bench
go build -o "$BENCH/udp-ceiling" ./bench/cmd/udp-ceiling
chmod a+rx "$BENCH/udp-ceiling"

# Thousands of connections at once need descriptors in every process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$BENCH/unroot-bench" --unroot "$BENCH/unroot" --udp-ceiling "$BENCH/udp-ceiling" --rk3 "$BENCH/rk3/rootlesskit" --rk1 /usr/bin/rootlesskit \
  --b4n "$BENCH/b4n/bypass4netns" --runc "$(command -v runc || echo /usr/sbin/runc)" \
  --user "$TEST_USER" --out bench/results "$@"
