#!/usr/bin/env bash
# Benchmark (on demand): shoal's task resolver against dnsmasq serving the same records,
# side by side in one run, from inside the same task namespace, with dnsperf.
# Usage: sudo ./scripts/bench-dns.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin shoal
SHOAL="$PWD/target/release/shoal"
SECONDS_PER_RUN="${1:-10}"
LAB=bench-dns
WORK=$(mktemp -d)
cleanup() {
    [ -f "$WORK/dnsmasq.pid" ] && kill "$(cat "$WORK/dnsmasq.pid")" 2>/dev/null || true
    "$SHOAL" lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$SHOAL" lab down --name "$LAB" >/dev/null 2>&1 || true
"$SHOAL" lab up --name "$LAB" --nodes 1 --runtime process --subnet 10.239.99.0/24 \
    --dispatcher-heartbeat 1s >/dev/null
in_lab() { "$SHOAL" lab exec --name "$LAB" manager1 -- "$SHOAL" "$@"; }
in_lab network create app >/dev/null
in_lab service create --name web --replicas 3 --network app shoal/demo-web >/dev/null
in_lab service create --name probe --network app shoal/demo-web >/dev/null
probe_id=$(in_lab service ps --no-trunc -q probe | head -1)
NS="shoal-$LAB-manager1-${probe_id:0:12}"

# dnsmasq gets the same records, on another loopback address of the same namespace.
for _ in $(seq 50); do
    ips=$(ip netns exec "$NS" dig +short tasks.web | sort)
    [ "$(echo "$ips" | grep -c .)" -eq 3 ] && break
    sleep 0.2
done
for ip in $ips; do echo "$ip web"; echo "$ip tasks.web"; done > "$WORK/hosts"
ip netns exec "$NS" dnsmasq --conf-file=/dev/null --no-resolv --no-hosts \
    --addn-hosts="$WORK/hosts" --listen-address=127.0.0.12 --bind-interfaces \
    --port=53 --cache-size=0 --pid-file="$WORK/dnsmasq.pid" --user=root
printf 'web A\ntasks.web A\n' > "$WORK/queries"

# Runs dnsperf against $1; prints "qps p50 p99" (latencies in microseconds).
measure() {
    ip netns exec "$NS" dnsperf -s "$1" -d "$WORK/queries" -l "$SECONDS_PER_RUN" -c 4 -v \
        > "$WORK/out" 2>&1
    qps=$(awk '/Queries per second:/ {print $4}' "$WORK/out")
    awk '/^> NOERROR/ {print $NF * 1000000}' "$WORK/out" | sort -n > "$WORK/lat"
    n=$(wc -l < "$WORK/lat")
    p50=$(sed -n "$(( n / 2 + 1 ))p" "$WORK/lat")
    p99=$(sed -n "$(( n * 99 / 100 + 1 ))p" "$WORK/lat")
    echo "$qps $p50 $p99"
}
read -r s_qps s_p50 s_p99 < <(measure 127.0.0.11)
read -r d_qps d_p50 d_p99 < <(measure 127.0.0.12)
printf '\n%-10s %12s %12s %12s\n' resolver "queries/s" "p50 (us)" "p99 (us)"
printf '%-10s %12.0f %12.0f %12.0f\n' shoal "$s_qps" "$s_p50" "$s_p99"
printf '%-10s %12.0f %12.0f %12.0f\n' dnsmasq "$d_qps" "$d_p50" "$d_p99"
awk -v a="$s_qps" -v b="$d_qps" -v c="$s_p99" -v d="$d_p99" 'BEGIN {
    printf "\nshoal/dnsmasq: %.2fx the queries per second, %.2fx the p99 latency\n", a / b, c / d }'
