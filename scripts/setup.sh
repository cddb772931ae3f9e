#!/usr/bin/env bash
# Installs everything shoal needs on a fresh Debian/Ubuntu machine. Idempotent: each step
# checks before it acts, so running it again is cheap.
set -euo pipefail

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: shoal manages namespaces, links and eBPF programs; run as root (sudo $0)" >&2
    exit 1
fi

PACKAGES=(iproute2 nftables docker.io busybox-static dnsutils protobuf-compiler bpftool
          tcpdump curl ca-certificates procps dnsmasq-base dnsperf wrk
          golang-github-docker-docker-dev   # moby's swagger.yaml, for tests/conformance.rs
          python3-docker)                   # Docker's Python SDK, for tests/sdk/docker_py.py
# bpf-linker links against LLVM 22, the LLVM of the nightly toolchain.
LLVM_PACKAGE=llvm-22-dev
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
dpkg-query -W -f='${Status}' "$LLVM_PACKAGE" 2>/dev/null | grep -q 'install ok installed' || missing+=("$LLVM_PACKAGE")
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ! apt-cache show "$LLVM_PACKAGE" >/dev/null 2>&1; then
        log "warning: $LLVM_PACKAGE is not in this distribution's archive; ebpf/ cannot be built here"
        missing=("${missing[@]/$LLVM_PACKAGE}")
    fi
    apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null
fi

# dockerd: started when not running (no systemd on every machine, so start it directly).
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log/shoal
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        systemctl start docker || true
    fi
    if ! docker info >/dev/null 2>&1; then
        nohup dockerd >/var/log/shoal/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/shoal/dockerd.log" >&2; exit 1; }
fi

# Images, built from busybox-static (no registry is reachable): images/NAME/ plus host
# files given by path, copied into the image at the same path (rootfs/ in the context).
# Each is rebuilt when any of its files change.
build_image() {
    tag="$1"
    dir="$(cd "$(dirname "$0")/../images/$2" && pwd)"
    shift 2
    hash="$(cat "$dir"/* /bin/busybox "$@" | sha256sum | cut -c1-16)"
    built="$(docker image inspect -f '{{index .Config.Labels "shoal.image.hash"}}' "$tag" 2>/dev/null || true)"
    [ "$built" = "$hash" ] && return 0
    log "building the $tag image"
    context="$(mktemp -d)"
    cp -p "$dir"/* /bin/busybox "$context/"
    mkdir -p "$context/rootfs"
    for f in "$@"; do
        mkdir -p "$context/rootfs$(dirname "$f")"
        cp -L "$f" "$context/rootfs$f"
    done
    if ! DOCKER_BUILDKIT=0 docker build -q --label "shoal.image.hash=$hash" -t "$tag" "$context" >"$context.log" 2>&1; then
        cat "$context.log" >&2
        exit 1
    fi
    rm -rf "$context" "$context.log"
}
build_image shoal/demo-web:latest demo-web
# Stand-ins for Docker's get-started Part 5 stack (examples/get-started-part5.yml): the
# visualizer carries the host's docker CLI and the libraries it links.
docker_cli="$(command -v docker)"
mapfile -t docker_libs < <(ldd "$docker_cli" | grep -o '/[^ ]*' | sort -u)
build_image shoal/visualizer-standin:latest visualizer-standin "$docker_cli" "${docker_libs[@]}"
build_image shoal/redis-standin:latest redis-standin

# Rust toolchains: stable for the workspace, nightly + rust-src + bpf-linker for ebpf/.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup first" >&2
    exit 1
fi
# The tests check formatting and lints (scripts/test.sh).
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        log "adding $component"
        rustup component add "$component"
    fi
done
if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain (for ebpf/)"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    log "adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly
fi
if ! command -v bpf-linker >/dev/null 2>&1 && [ -d /usr/lib/llvm-22 ]; then
    log "installing bpf-linker (about 2 minutes)"
    PATH="/usr/lib/llvm-22/bin:$PATH" cargo install --locked bpf-linker@0.13.0 \
        --no-default-features --features llvm-22 >/dev/null 2>&1
fi
log "ready"
