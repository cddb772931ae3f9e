#!/usr/bin/env bash
# Builds the TC programs in ebpf/ (nightly, rust-src, bpf-linker: scripts/setup.sh installs
# them). The agent embeds the result when it is built next (agent/build.rs); without it,
# `--lb-engine ebpf` falls back to nftables and says so in the daemon's log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v bpf-linker >/dev/null 2>&1; then
    echo "build-ebpf: bpf-linker is missing (no LLVM 22 here), so ebpf/ was not built" >&2
    exit 0
fi
(cd ebpf && cargo +nightly build --release)
