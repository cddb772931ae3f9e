#!/usr/bin/env bash
# Provisions one VM: packages, the shoal daemon as a service advertising the host-only
# address (never the NAT address 10.0.2.15), then init (manager1) or join (the others).
set -euo pipefail
NAME="$1" IP="$2" MANAGER_IP="$3"
BIN=/shoal/target/release/shoal
[ -x "$BIN" ] || { echo "build shoal on the host first: cargo build --release" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq iproute2 nftables docker.io busybox-static dnsutils curl >/dev/null
install -m 0755 "$BIN" /usr/local/bin/shoal
cat > /etc/systemd/system/shoal.service <<UNIT
[Unit]
Description=shoal node daemon
After=network-online.target docker.service
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/shoal daemon --advertise-addr $IP --hostname $NAME
Restart=always

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now shoal
for _ in $(seq 1 50); do shoal info >/dev/null 2>&1 && break; sleep 0.2; done
if shoal info | grep -q "Swarm: active"; then exit 0; fi
if [ "$NAME" = manager1 ]; then
    shoal swarm init --advertise-addr "$IP"
    shoal swarm join-token -q worker > /shoal/vagrant/.worker-token
else
    shoal swarm join --token "$(cat /shoal/vagrant/.worker-token)" "$MANAGER_IP:2377"
fi
