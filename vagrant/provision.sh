#!/usr/bin/env bash
# Provisions one VM: shoal installed and its daemon started as a service advertising the
# host-only address (never the NAT address 10.0.2.15); then, where the repository is
# shared at /shoal (VirtualBox), init on manager1 and join on the others. On libvirt the
# box carries the packages and the binary comes in by the file provisioner; whoever drives
# the VMs (scripts/vagrant-test.sh) runs init and join.
set -euo pipefail
NAME="$1" IP="$2" MANAGER_IP="$3"
export DEBIAN_FRONTEND=noninteractive

if [ -f /tmp/shoal ]; then
    install -m 0755 /tmp/shoal /usr/local/bin/shoal
    docker load -i /tmp/demo-web.tar >/dev/null
    rm -f /tmp/shoal /tmp/demo-web.tar
else
    apt-get update -qq
    apt-get install -y -qq iproute2 nftables docker.io busybox-static dnsutils curl tcpdump build-essential >/dev/null
    BIN=/shoal/target/release/shoal
    if [ "$NAME" = manager1 ] && [ ! -x "$BIN" ]; then
        # No binary from the host: manager1 builds one into the shared folder.
        if ! command -v cargo >/dev/null; then
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
        fi
        apt-get install -y -qq protobuf-compiler >/dev/null
        (cd /shoal && "$HOME/.cargo/bin/cargo" build --release -p shoal)
    fi
    for _ in $(seq 1 3600); do [ -x "$BIN" ] && break; sleep 1; done
    install -m 0755 "$BIN" /usr/local/bin/shoal
    if [ -z "$(docker images -q shoal/demo-web)" ]; then
        ctx="$(mktemp -d)"
        cp /shoal/images/demo-web/* /bin/busybox "$ctx/"
        DOCKER_BUILDKIT=0 docker build -q -t shoal/demo-web "$ctx" >/dev/null
        rm -rf "$ctx"
    fi
fi

cat > /etc/systemd/system/shoal.service <<UNIT
[Unit]
Description=shoal node daemon
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
ExecStart=/usr/local/bin/shoal daemon --advertise-addr $IP --hostname $NAME
Restart=always

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now docker shoal >/dev/null 2>&1
for _ in $(seq 1 100); do shoal info >/dev/null 2>&1 && break; sleep 0.2; done
shoal info >/dev/null

[ -d /shoal/vagrant ] || exit 0
if shoal info | grep -q "Swarm: active"; then exit 0; fi
if [ "$NAME" = manager1 ]; then
    shoal swarm init --advertise-addr "$IP"
    shoal swarm join-token -q worker > /shoal/vagrant/.worker-token
else
    for _ in $(seq 1 600); do [ -s /shoal/vagrant/.worker-token ] && break; sleep 1; done
    shoal swarm join --token "$(cat /shoal/vagrant/.worker-token)" "$MANAGER_IP:2377"
fi
