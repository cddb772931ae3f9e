#!/usr/bin/env bash
# Provisions one VM: shoal installed and its daemon started as a service advertising the
# host-only address (never the NAT address 10.0.2.15). The swarm is then formed by hand,
# as in Docker's tutorial (init on manager1, join on the others), or by whoever drives the
# VMs (scripts/vagrant-test.sh).
# Where the binary comes from: the file provisioner (/tmp/shoal: VMs without internet, the
# libvirt provider), the host's build in the synced folder, or, failing both, manager1
# builds it with rustup and cargo and serves it to the workers over the host-only network
# (the synced folder may be a one-way rsync copy, so it cannot carry the build back).
set -euo pipefail
NAME="$1" IP="$2" MANAGER_IP="$3"
export DEBIAN_FRONTEND=noninteractive
DIST_PORT=8765

if [ -f /tmp/shoal ]; then
    install -m 0755 /tmp/shoal /usr/local/bin/shoal
    docker load -i /tmp/demo-web.tar >/dev/null
    rm -f /tmp/shoal /tmp/demo-web.tar
else
    apt-get update -qq
    apt-get install -y -qq iproute2 nftables docker.io apparmor busybox-static dnsutils curl tcpdump >/dev/null
    if [ -x /shoal/target/release/shoal ]; then
        install -m 0755 /shoal/target/release/shoal /usr/local/bin/shoal
    elif [ "$NAME" = manager1 ]; then
        apt-get install -y -qq build-essential protobuf-compiler >/dev/null
        command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] \
            || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
        "$HOME/.cargo/bin/cargo" build --release -p shoal --manifest-path /shoal/Cargo.toml \
            --target-dir /opt/shoal-build
        install -m 0755 /opt/shoal-build/release/shoal /usr/local/bin/shoal
        install -D -m 0644 /usr/local/bin/shoal /srv/shoal-dist/shoal
        busybox httpd -p "$IP:$DIST_PORT" -h /srv/shoal-dist
    else
        curl -fsS --retry 30 --retry-connrefused "http://$MANAGER_IP:$DIST_PORT/shoal" -o /tmp/shoal
        install -m 0755 /tmp/shoal /usr/local/bin/shoal && rm -f /tmp/shoal
    fi
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
echo "$NAME is ready: shoal on $(uname -r), advertising $IP"
