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
in_lab() { echo "+ shoal lab exec --name $NAME manager1 -- $*"; $SHOAL lab exec --name "$NAME" manager1 -- "$@"; }
echo
in_lab shoal service create --name web --replicas 5 shoal/demo-web
in_lab shoal service ls
in_lab shoal service ps web
echo
echo "Each task answers with its own hostname (the routing mesh that publishes it on every"
echo "node's address comes with the overlay and load-balancer work):"
for c in $(docker ps -q --filter label=com.docker.swarm.service.name=web); do
    echo "  $(docker inspect -f '{{.Name}}' "$c" | cut -c2-): $(docker exec "$c" wget -qO- http://127.0.0.1/)"
done
echo
echo "The lab stays up. Explore it with: $SHOAL lab exec --name $NAME manager1 -- shoal node ls"
echo "Remove it with:                     $SHOAL lab down --name $NAME"
