#!/usr/bin/env bash
# Benchmark, on demand: the load-balancer engines side by side (tests/benches/lb.rs).
# Usage: sudo ./scripts/bench-mesh.sh [throughput] [program]   (default: both)
# Prints requests/s through the mesh and straight to a task, ebpf and nftables at 10 and
# 10,000 services, the ratios, and the time to program 1k/10k/50k backends.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo bench -p shoal-tests --bench lb -- "$@"
