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
in_lab shoal network create -d overlay demo-net
in_lab shoal service create --name web --replicas 5 --network demo-net shoal/demo-web
in_lab shoal service ls
in_lab shoal service ps web
echo
echo "Every task is on the demo-net overlay (VXLAN between the nodes). From the first task,"
echo "each task answers over the overlay with its own hostname (the routing mesh that"
echo "publishes the service on every node's address comes with the load-balancer work):"
tasks=$(docker ps -q --filter label=com.docker.swarm.service.name=web)
first=$(echo "$tasks" | head -1)
for c in $tasks; do
    ip=$(docker exec "$c" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
    echo "  $(docker inspect -f '{{.Name}}' "$c" | cut -c2-) at $ip: $(docker exec "$first" wget -qO- "http://$ip/")"
done
echo
echo "The lab stays up. Explore it with: $SHOAL lab exec --name $NAME manager1 -- shoal node ls"
echo "Remove it with:                     $SHOAL lab down --name $NAME"
