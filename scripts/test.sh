#!/usr/bin/env bash
# All tests: set up this machine, build everything (the ebpf/ programs too), run the suite.
# The integration tests build lab clusters, so this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The TC programs first: the agent embeds them.
./scripts/build-ebpf.sh
# The house rules first: formatted, and clippy-clean with warnings as errors.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
