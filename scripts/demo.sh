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
in_lab shoal service create --name web --replicas 5 -p 8080:80 --network demo-net shoal/demo-web
in_lab shoal service ls
in_lab shoal service ps web
echo
echo "The routing mesh publishes port 8080 on EVERY node: each node's address answers, and"
echo "the replies rotate over the 5 tasks wherever they run (hostnames are container IDs):"
nodes=$($SHOAL lab status --name "$NAME" | awk '$2 ~ /^[0-9]+\./ {print $2}')
for ip in $nodes; do
    for _ in $(seq 1 50); do curl -sf --max-time 2 "http://$ip:8080/" >/dev/null && break; sleep 0.2; done
done
for ip in $nodes; do
    for _ in 1 2 3 4 5; do echo "  curl http://$ip:8080/  ->  $(curl -s --max-time 2 "http://$ip:8080/")"; done
done
echo
echo "Inside a task, the service's name resolves to its VIP, balanced over the replicas:"
first=$(docker ps -q --filter label=com.docker.swarm.service.name=web | head -1)
echo "  nslookup web -> $(docker exec "$first" nslookup web 127.0.0.11 | awk '/^Address/ {a=$NF} END {print a}')"
for _ in 1 2 3; do echo "  wget http://web/  ->  $(docker exec "$first" wget -qO- http://web/)"; done
echo
echo "The lab stays up. Explore it with: $SHOAL lab exec --name $NAME manager1 -- shoal node ls"
echo "Remove it with:                     $SHOAL lab down --name $NAME"
