#!/usr/bin/env bash
# Builds the Debian 12 box the libvirt provider boots (no box can be downloaded here):
# debootstrap from Debian's archive, everything the VMs need inside (docker.io, nftables,
# busybox-static, tcpdump: the VMs have no internet), an ext4 image booted directly with
# the box's own kernel and initramfs. Cached by a hash of this script: prints the box's
# path, building it only when the cache lacks it.
#   vagrant/box/build.sh [CACHE_DIR]        (default /var/cache/shoal/boxes)
set -euo pipefail

CACHE="${1:-/var/cache/shoal/boxes}"
HERE="$(cd "$(dirname "$0")" && pwd)"
HASH="$(sha256sum "$HERE/build.sh" | cut -c1-12)"
BOX="$CACHE/shoal-debian12-$HASH.box"
log() { printf '\033[1mbox:\033[0m %s\n' "$*" >&2; }

if [ -f "$BOX" ]; then
    echo "$BOX"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "box: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "box: debootstrap is missing (scripts/vagrant-setup.sh installs it)" >&2; exit 1; }

PACKAGES=systemd,systemd-sysv,udev,dbus,iproute2,iputils-ping,openssh-server,kmod,sudo,
PACKAGES+=linux-image-amd64,initramfs-tools,ifupdown,isc-dhcp-client,rsync,
PACKAGES+=nftables,busybox-static,curl,ca-certificates,tcpdump,dnsutils,procps,docker.io,apparmor
MIRROR="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# Vagrant's well-known key: vagrant replaces it with a key of the VM's own at first boot.
VAGRANT_KEY="$(find / -path /proc -prune -o -name vagrant.pub -path '*vagrant*/keys/*' -print 2>/dev/null | head -1)"
[ -n "$VAGRANT_KEY" ] || { echo "box: vagrant's public key was not found (is vagrant installed?)" >&2; exit 1; }

WORK="$(mktemp -d /var/tmp/shoal-box.XXXXXX)"
cleanup() {
    for m in dev/pts dev proc sys; do umount "$WORK/root/$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

log "debootstrap of Debian 12 from $MIRROR (about two minutes)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }

R="$WORK/root"
log "configuring"
# Every VM made from the box gets its own machine-id (and so its own MAC addresses).
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
echo debian12 > "$R/etc/hostname"
echo "/dev/vda / ext4 defaults 0 1" > "$R/etc/fstab"
cat > "$R/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF
# Only what a virtio VM needs, so it boots fast.
sed -i 's/^MODULES=.*/MODULES=list/' "$R/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 > "$R/etc/initramfs-tools/modules"
mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"
mount -t proc proc "$R/proc"; mount -t sysfs sys "$R/sys"
chroot "$R" update-initramfs -u -k all >/dev/null 2>&1
chroot "$R" useradd -m -s /bin/bash vagrant
install -d -m 0700 -o 1000 -g 1000 "$R/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$VAGRANT_KEY" "$R/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$R/etc/sudoers.d/vagrant"
chmod 0440 "$R/etc/sudoers.d/vagrant"
echo 'UseDNS no' > "$R/etc/ssh/sshd_config.d/vagrant.conf"
chroot "$R" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
# The host keys are made at first boot, per VM.
rm -f "$R"/etc/ssh/ssh_host_*
cat > "$R/etc/systemd/system/ssh-host-keys.service" <<'EOF'
[Unit]
Description=Make this VM's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable ssh-host-keys.service >/dev/null 2>&1
chroot "$R" apt-get clean
for m in dev/pts dev proc sys; do umount "$R/$m"; done

log "making the image"
OUT="$WORK/box"
mkdir -p "$OUT"
cp "$R"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$R"/boot/initrd.img-* "$OUT/initrd.img"
truncate -s 4G "$WORK/root.img"
mkfs.ext4 -q -L root -d "$R" "$WORK/root.img"
qemu-img convert -O qcow2 "$WORK/root.img" "$OUT/box.img"
cat > "$OUT/metadata.json" <<'EOF'
{"provider": "libvirt", "format": "qcow2", "virtual_size": 4}
EOF
# The box boots its own kernel directly (the image has no boot loader).
cat > "$OUT/Vagrantfile" <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.expand_path("vmlinuz", __dir__)
    libvirt.initrd = File.expand_path("initrd.img", __dir__)
    libvirt.cmd_line = "console=ttyS0 root=/dev/vda rw net.ifnames=0 quiet"
  end
end
EOF
mkdir -p "$CACHE"
tar -C "$OUT" -czf "$BOX.part" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$BOX.part" "$BOX"
log "built $BOX"
echo "$BOX"
