#!/usr/bin/env bash
# All tests: set up this machine, build everything (the ebpf/ programs too), run the suite.
# The integration tests build lab clusters, so this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --all-targets
if command -v bpf-linker >/dev/null 2>&1; then
    (cd ebpf && cargo +nightly build --release)
else
    echo "test: bpf-linker is missing (no LLVM 22 here), so ebpf/ was not built" >&2
fi
cargo test --workspace
