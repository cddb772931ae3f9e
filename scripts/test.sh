#!/usr/bin/env bash
# All tests: set up this machine, build everything (agent/build.rs builds the ebpf/
# programs), run the suite.
# The integration tests build lab clusters, so this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The house rules first: formatted, and clippy-clean with warnings as errors.
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo build --all-targets
cargo test
# Three Debian 12 VMs with their own kernels and dockerd (libvirt; TCG where KVM cannot
# run guests): the swarm on real machines, on the kernel most users have.
./scripts/vagrant-test.sh
