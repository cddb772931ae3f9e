#!/usr/bin/env bash
# What the Vagrant test needs on a Debian 12 host, installed and started: debootstrap (the
# box), vagrant with vagrant-libvirt, libvirt, and QEMU (from bookworm-backports: the
# bookworm build conflicts with the newer qemu-utils some hosts carry). libvirtd and
# virtlogd are started directly where there is no systemd. Idempotent.
set -euo pipefail
log() { printf '\033[1mvagrant-setup:\033[0m %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "vagrant-setup: run as root" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
export DEBIAN_FRONTEND=noninteractive
BACKPORTS=/etc/apt/sources.list.d/shoal-backports.sources
if ! installed qemu-system-x86; then
    if [ ! -f "$BACKPORTS" ]; then
        uris="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
        cat > "$BACKPORTS" <<EOF
Types: deb
URIs: ${uris:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq
    fi
    log "installing QEMU from bookworm-backports"
    apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
missing=()
for p in debootstrap vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# /dev/kvm as udev makes it on Debian (root:kvm 0660). Without udev it is root-only, and
# then libvirt finds KVM in its QEMU probe but not for its QEMU user, calls every cached
# probe stale, and probes QEMU again (some 15 s) on each call vagrant-libvirt makes.
if [ -c /dev/kvm ]; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
mkdir -p /var/log/shoal /run/libvirt
if ! pgrep -x virtlogd >/dev/null; then
    virtlogd -d -p /run/shoal-virtlogd.pid
fi
if ! pgrep -x libvirtd >/dev/null; then
    log "starting libvirtd"
    libvirtd -d -p /run/shoal-libvirtd.pid
fi
for _ in $(seq 1 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 1
done
virsh -c qemu:///system version >/dev/null
log "ready"
