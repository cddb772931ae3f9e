#!/usr/bin/env bash
# Benchmark (on demand): shoal's task resolver against dnsmasq serving the same records,
# side by side in one run, from inside the same task namespace, with dnsperf.
# The two take turns over several rounds (A/B interleaved, so drift hits both alike); each
# round also counts the CPU time the server used, since on a small machine dnsperf and the
# server share the cores: queries per CPU-second tells how lean each one is.
# dnsperf runs two threads: with one, it saturated its own core (~320k q/s here) before
# either server did.
# Usage: sudo ./scripts/bench-dns.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bin shoal
SHOAL="$PWD/target/release/shoal"
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-3}"
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

# CPU time (clock ticks) pid $1 has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
DAEMON=$(pgrep -f "shoal daemon .*labs/$LAB/manager1/")

# Runs dnsperf against $1 (served by pid $2); appends "qps p50 p99 queries-per-cpu-second"
# (latencies in microseconds) to $WORK/$3.
measure() {
    local before after
    before=$(cpu_ticks "$2")
    ip netns exec "$NS" dnsperf -s "$1" -d "$WORK/queries" -l "$SECONDS_PER_RUN" -c 4 -T "${DNSPERF_THREADS:-2}" -v \
        > "$WORK/out" 2>&1
    after=$(cpu_ticks "$2")
    qps=$(awk '/Queries per second:/ {print $4}' "$WORK/out")
    awk '/^> NOERROR/ {print $NF * 1000000}' "$WORK/out" | sort -n > "$WORK/lat"
    n=$(wc -l < "$WORK/lat")
    p50=$(sed -n "$(( n / 2 + 1 ))p" "$WORK/lat")
    p99=$(sed -n "$(( n * 99 / 100 + 1 ))p" "$WORK/lat")
    per_cpu=$(awk -v q="$qps" -v s="$SECONDS_PER_RUN" -v t=$(( after - before )) -v hz="$HZ" \
        'BEGIN { printf "%.0f", (t > 0 ? q * s / (t / hz) : 0) }')
    echo "$qps $p50 $p99 $per_cpu" >> "$WORK/$3"
}
for round in $(seq 1 "$ROUNDS"); do
    # Who goes first alternates too.
    if [ $(( round % 2 )) -eq 1 ]; then
        measure 127.0.0.11 "$DAEMON" shoal; measure 127.0.0.12 "$(cat "$WORK/dnsmasq.pid")" dnsmasq
    else
        measure 127.0.0.12 "$(cat "$WORK/dnsmasq.pid")" dnsmasq; measure 127.0.0.11 "$DAEMON" shoal
    fi
done
# The median round of each column, and the spread of queries/s (min-max).
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
spread() { awk '{print $1}' "$WORK/$1" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'; }
printf '\n%-10s %12s %12s %12s %14s %18s\n' resolver "queries/s" "p50 (us)" "p99 (us)" "queries/cpu-s" "queries/s spread"
for r in shoal dnsmasq; do
    printf '%-10s %12.0f %12.0f %12.0f %14.0f %18s\n' "$r" "$(col "$r" 1)" "$(col "$r" 2)" \
        "$(col "$r" 3)" "$(col "$r" 4)" "$(spread "$r")"
done
awk -v a="$(col shoal 1)" -v b="$(col dnsmasq 1)" -v c="$(col shoal 3)" -v d="$(col dnsmasq 3)" \
    -v e="$(col shoal 4)" -v f="$(col dnsmasq 4)" -v r="$ROUNDS" 'BEGIN {
    printf "\nshoal/dnsmasq: %.2fx the queries per second, %.2fx the p99 latency, %.2fx the queries per CPU-second (median of %d rounds)\n", a / b, c / d, e / f, r }'
