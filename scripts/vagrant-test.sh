#!/usr/bin/env bash
# The swarm on three real machines: Debian 12 VMs under libvirt (KVM where it can run
# guests, QEMU's TCG otherwise), each with its own kernel and dockerd, joined over a
# private network. Checks what the tutorials do: the routing mesh from the host on every
# VM, service DNS in a task, VXLAN between VMs on their real NICs, a VM powered off and
# one rebooted. Prints each VM's kernel and balancer, and the request counts; then
# destroys the VMs and stops what it started.
#   scripts/vagrant-test.sh     (root; the build's target/debug/shoal goes into the VMs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
log() { printf '\033[1mvagrant-test:\033[0m %s\n' "$*"; }
fail() { printf '\033[1mvagrant-test: FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

started_libvirtd=""
pgrep -x libvirtd >/dev/null || started_libvirtd=yes
./scripts/vagrant-setup.sh
BOX_FILE="$(vagrant/box/build.sh)"
BOX_NAME="shoal/$(basename "$BOX_FILE" .box)"
export VAGRANT_HOME=/var/cache/shoal/vagrant.d
export VAGRANT_DEFAULT_PROVIDER=libvirt
export SHOAL_VAGRANT_BOX="$BOX_NAME"
export SHOAL_VAGRANT_SUBNET="${SHOAL_VAGRANT_SUBNET:-10.239.250}"
vagrant box list 2>/dev/null | grep -q "^$BOX_NAME " || vagrant box add -f --name "$BOX_NAME" "$BOX_FILE" >/dev/null
# Boxes of earlier builds go: their files, Vagrant's copies and libvirt's volumes.
hash="${BOX_NAME##*-}"
vagrant box list 2>/dev/null | awk '/^shoal\/shoal-debian12-/ {print $1}' | grep -v -- "$hash" \
    | xargs -r -n1 vagrant box remove -f >/dev/null 2>&1 || true
find "$(dirname "$BOX_FILE")" -name 'shoal-debian12-*.box' ! -name "*$hash*" -delete
virsh -c qemu:///system vol-list default 2>/dev/null | awk '/shoal-debian12-/ {print $1}' | grep -v -- "$hash" \
    | xargs -r -n1 virsh -c qemu:///system vol-delete --pool default >/dev/null 2>&1 || true

# KVM only where the CPU offers virtualisation to guests (a nested PVM host has /dev/kvm
# but no vmx/svm, and its guests cannot start): QEMU's TCG otherwise.
export SHOAL_VAGRANT_DRIVER=qemu
if [ -w /dev/kvm ] && grep -Eqw 'vmx|svm' /proc/cpuinfo; then
    SHOAL_VAGRANT_DRIVER=kvm
fi
log "VMs run under $SHOAL_VAGRANT_DRIVER"

WORK="$(mktemp -d /var/tmp/shoal-vagrant.XXXXXX)"
objcopy --strip-debug target/debug/shoal "$WORK/shoal"
docker save shoal/demo-web:latest -o "$WORK/demo-web.tar"
export SHOAL_BINARY="$WORK/shoal" SHOAL_DEMO_IMAGE="$WORK/demo-web.tar"

cleanup() {
    log "destroying the VMs"
    (cd "$ROOT/vagrant" && vagrant destroy -f >/dev/null 2>&1) || true
    rm -rf "$WORK" "$ROOT/vagrant/.vagrant"
    # The networks vagrant-libvirt made.
    for net in $(virsh -c qemu:///system net-list --all --name 2>/dev/null | grep '^vagrant'); do
        virsh -c qemu:///system net-destroy "$net" >/dev/null 2>&1 || true
        virsh -c qemu:///system net-undefine "$net" >/dev/null 2>&1 || true
    done
    # A libvirtd this script started is stopped, and the firewall chains it leaves behind
    # go with it (a libvirtd already running keeps its own).
    [ -n "$started_libvirtd" ] || return 0
    for pid in /run/shoal-libvirtd.pid /run/shoal-virtlogd.pid; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    sleep 1
    for table in filter nat mangle; do
        iptables -t "$table" -S 2>/dev/null | grep -- '-j LIBVIRT_' | sed 's/^-A /-D /' | while read -r rule; do
            eval iptables -t "$table" "$rule" 2>/dev/null || true
        done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N LIBVIRT_/ {print $2}'); do
            iptables -t "$table" -F "$chain" 2>/dev/null || true
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}
trap cleanup EXIT

VMS=(manager1 worker1 worker2)
IPS=("$SHOAL_VAGRANT_SUBNET.11" "$SHOAL_VAGRANT_SUBNET.12" "$SHOAL_VAGRANT_SUBNET.13")
on() { local vm="$1"; shift; (cd "$ROOT/vagrant" && vagrant ssh "$vm" -c "sudo $*" -- -q) 2>/dev/null; }

log "vagrant up of ${VMS[*]}"
start=$(date +%s)
(cd vagrant && vagrant up >"$WORK/up.log" 2>&1) || { tail -40 "$WORK/up.log"; fail "vagrant up"; }
log "three VMs up and provisioned in $(( $(date +%s) - start )) s"

on manager1 shoal swarm init --advertise-addr "${IPS[0]}" >/dev/null
token="$(on manager1 shoal swarm join-token -q worker | tr -d '\r')"
for i in 1 2; do
    on "${VMS[$i]}" shoal swarm join --token "$token" "${IPS[0]}:2377" >/dev/null
done
for vm in "${VMS[@]}"; do
    kernel="$(on "$vm" uname -r | tr -d '\r')"
    lb="$(on "$vm" shoal debug lb | tr -d '\r')"
    engine="$(echo "$lb" | awk -F': ' '/^Engine/ {print $2}')"
    attach="$(echo "$lb" | awk -F': ' '/^Attach mode/ {print $2}')"
    printf '%-9s kernel: %s  engine: %s  attach: %s\n' "$vm" "$kernel" "$engine" "${attach:-n/a}"
    [ "$engine" = ebpf ] || fail "$vm balances with $engine, not ebpf"
done

on manager1 shoal network create app >/dev/null
on manager1 shoal service create --name web --replicas 5 --network app -p 8080:80 shoal/demo-web >/dev/null
# One task on every VM, bound to its node: the one a rebooted VM must get back.
on manager1 shoal service create --detach --name probe --mode global --network app shoal/demo-web >/dev/null

# From the host, every VM's address answers, and the answers come from several tasks.
curl_all() {
    local n="$1" ok=0 bad=0 hosts=""
    shift
    for _ in $(seq 1 "$n"); do
        for ip in "$@"; do
            if h="$(curl -s --max-time 3 "http://$ip:8080/" | sed -n 's/^Hello from //p')" && [ -n "$h" ]; then
                ok=$((ok + 1)); hosts="$hosts $h"
            else
                bad=$((bad + 1))
            fi
        done
    done
    echo "$ok $bad $(echo "$hosts" | tr ' ' '\n' | sort -u | grep -c .)"
}
for _ in $(seq 1 120); do
    read -r ok bad distinct <<<"$(curl_all 1 "${IPS[@]}")"
    [ "$bad" -eq 0 ] && [ "$ok" -eq 3 ] && break
    sleep 2
done
read -r ok bad distinct <<<"$(curl_all 20 "${IPS[@]}")"
log "routing mesh from the host: $ok answered, $bad failed, $distinct tasks seen"
[ "$bad" -eq 0 ] || fail "$bad requests to the published port failed"
[ "$distinct" -ge 3 ] || fail "answers came from $distinct tasks only"

# Service DNS inside a task: the name answers (the VIP), tasks.web lists the five tasks.
task_on() { on "$1" docker ps -q --filter label=com.docker.swarm.service.name=web | head -1 | tr -d '\r'; }
c1="$(task_on manager1)"
[ -n "$c1" ] || fail "no task of web runs on manager1"
vip="$(on manager1 docker exec "$c1" nslookup web | awk '/^Address/ && $2 !~ /:/ {print $2}' | tail -1 | tr -d '\r')"
mapfile -t addrs < <(on manager1 docker exec "$c1" nslookup tasks.web | awk '/^Address/ && $2 !~ /:/ {print $2}' | tr -d '\r')
log "service DNS in a task on manager1: web is $vip, tasks.web has ${#addrs[@]} addresses"
[ -n "$vip" ] && [ "${#addrs[@]}" -eq 5 ] || fail "service DNS: web=$vip, tasks.web=${addrs[*]}"

# Task to task across VMs: VXLAN on the VMs' own NICs (worker2's captured meanwhile).
on worker2 "sh -c 'timeout 60 tcpdump -ni eth1 -c 3 udp port 4789 >/tmp/vxlan.txt 2>&1 &'"
sleep 2
fetched=0
for a in "${addrs[@]}"; do
    on manager1 docker exec "$c1" timeout 5 wget -qO- "http://$a/" | grep -q "Hello from" && fetched=$((fetched + 1))
done
sleep 1
seen="$(on worker2 cat /tmp/vxlan.txt | grep -c 'UDP\|VXLAN' || true)"
log "from manager1's task to every task: $fetched of ${#addrs[@]} answered; VXLAN packets on worker2's eth1: $seen"
[ "$fetched" -eq "${#addrs[@]}" ] || fail "tasks did not reach each other across VMs"
[ "$seen" -ge 1 ] || fail "no VXLAN (udp/4789) on worker2's NIC"

# True host loss: worker2 powered off. The other VMs' addresses keep answering, and the
# replicas come back on them.
domain="$(virsh -c qemu:///system list --name | grep -x '.*_worker2' | head -1)"
virsh -c qemu:///system destroy "$domain" >/dev/null
lost=$(date +%s) failed=0 made=0 last_fail=0
while [ $(( $(date +%s) - lost )) -lt 45 ]; do
    read -r ok bad _ <<<"$(curl_all 1 "${IPS[0]}" "${IPS[1]}")"
    made=$((made + ok + bad)); failed=$((failed + bad))
    [ "$bad" -gt 0 ] && last_fail=$(( $(date +%s) - lost ))
    sleep 0.2
done
running="$(on manager1 shoal service ls | awk '$2 == "web" {print $4}' | tr -d '\r')"
log "worker2 powered off: $made requests through manager1 and worker1, $failed failed (the last ${last_fail}s after the loss); web runs $running"
[ "$running" = "5/5" ] || fail "replicas were not restored: $running"
read -r ok bad _ <<<"$(curl_all 10 "${IPS[0]}" "${IPS[1]}")"
[ "$bad" -eq 0 ] || fail "$bad requests failed after the loss had settled"

# Power back on: worker2 rejoins as Ready and takes tasks again.
virsh -c qemu:///system start "$domain" >/dev/null
for _ in $(seq 1 180); do
    on manager1 shoal node ls | grep -E 'worker2 +Ready' >/dev/null && break
    sleep 2
done
on manager1 shoal node ls | grep -E 'worker2 +Ready' >/dev/null || fail "worker2 did not come back Ready"
# The rolling update takes its time under TCG: wait for a task on worker2, not the CLI.
on manager1 shoal service update --detach --force web >/dev/null || fail "service update --force"
for _ in $(seq 1 120); do
    [ -n "$(task_on worker2)" ] && break
    sleep 3
done
[ -n "$(task_on worker2)" ] || fail "no task of web came to worker2 after it returned"
read -r ok bad distinct <<<"$(curl_all 10 "${IPS[@]}")"
log "worker2 back: $ok answered, $bad failed through all three VMs"
[ "$bad" -eq 0 ] || fail "$bad requests failed after worker2 came back"

# A graceful reboot of worker1 (ACPI, as `sudo reboot`): its daemon starts at boot, it
# rejoins as Ready, its global task runs on it again in a container started after the
# boot, and the mesh answers through its address.
probe_on_worker1() { on worker1 docker ps -q --filter label=com.docker.swarm.service.name=probe | head -1 | tr -d '\r'; }
for _ in $(seq 1 60); do [ -n "$(probe_on_worker1)" ] && break; sleep 2; done
before="$(probe_on_worker1)"
[ -n "$before" ] || fail "the global service has no task on worker1"
domain1="$(virsh -c qemu:///system list --name | grep -x '.*_worker1' | head -1)"
booted_before="$(on worker1 cat /proc/sys/kernel/random/boot_id | tr -d '\r')"
rebooted=$(date +%s)
virsh -c qemu:///system reboot "$domain1" >/dev/null
for _ in $(seq 1 120); do
    now_boot="$(on worker1 cat /proc/sys/kernel/random/boot_id 2>/dev/null | tr -d '\r' || true)"
    [ -n "$now_boot" ] && [ "$now_boot" != "$booted_before" ] && break
    sleep 2
done
[ "${now_boot:-}" != "$booted_before" ] || fail "worker1 did not reboot"
for _ in $(seq 1 90); do
    on manager1 shoal node ls | grep -E 'worker1 +Ready' >/dev/null && [ -n "$(probe_on_worker1)" ] && break
    sleep 2
done
after="$(probe_on_worker1)"
on manager1 shoal node ls | grep -E 'worker1 +Ready' >/dev/null || fail "worker1 did not come back Ready after its reboot"
[ -n "$after" ] || fail "worker1's global task did not run again after its reboot"
for _ in $(seq 1 60); do
    read -r ok bad _ <<<"$(curl_all 1 "${IPS[1]}")"
    [ "$bad" -eq 0 ] && break
    sleep 2
done
read -r ok bad _ <<<"$(curl_all 10 "${IPS[@]}")"
log "worker1 rebooted: Ready with its global task again ($before before, $after after) $(( $(date +%s) - rebooted )) s later; $ok answered, $bad failed through all three VMs"
[ "$bad" -eq 0 ] || fail "$bad requests failed after worker1's reboot"

log "passed"
