#!/usr/bin/env bash
# The main job: set up this machine, build shoal, and bring up a 3-node lab swarm.
# Usage: sudo ./scripts/demo.sh [lab name]   (re-running replaces that lab)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin shoal
# Installed so that `shoal` works everywhere, including inside `shoal lab exec`.
install -m 0755 target/release/shoal /usr/local/bin/shoal
SHOAL=shoal
NAME="${1:-default}"
$SHOAL lab down --name "$NAME" >/dev/null 2>&1 || true
$SHOAL lab up --name "$NAME" --nodes 3 --managers 1
echo
echo "+ shoal lab exec --name $NAME worker1 -- shoal info   (a worker's view)"
$SHOAL lab exec --name "$NAME" worker1 -- shoal info
echo
echo "The lab stays up. Explore it with: $SHOAL lab exec --name $NAME manager1 -- shoal node ls"
echo "Remove it with:                     $SHOAL lab down --name $NAME"
