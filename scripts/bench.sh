#!/usr/bin/env bash
# The benchmarks, on demand (not in CI), each measuring shoal and its anchor side by side
# in the same run; then one table: benchmark, shoal, anchor, ratio, goal, spread.
#   sudo ./scripts/bench.sh [dns] [mesh] [program]     (default: all of them)
#   dns      the task resolver against dnsmasq with the same records (bench-dns.sh)
#   mesh     requests/s through the routing mesh, ebpf against nftables and against
#            going straight to the task (bench-mesh.sh throughput)
#   program  the time to program the balancer's tables (bench-mesh.sh program)
# Each part's own output is kept in the run's directory, printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(dns mesh program)
OUT="$(mktemp -d /var/tmp/shoal-bench.XXXXXX)"
rows=()
row() { rows+=("$(printf '%-44s %14s %14s %8s %10s %s' "$@")"); }

for name in "${names[@]}"; do
    case "$name" in
    dns)
        ./scripts/bench-dns.sh 10 3 | tee "$OUT/dns.txt"
        read -r s_qps s_p99 s_spread < <(awk '$1 == "shoal" {print $2, $4, $6}' "$OUT/dns.txt")
        read -r d_qps d_p99 d_spread < <(awk '$1 == "dnsmasq" {print $2, $4, $6}' "$OUT/dns.txt")
        read -r r_qps r_p99 r_cpu < <(sed -n 's/^shoal\/dnsmasq: \([0-9.]*\)x.*, \([0-9.]*\)x the p99.*, \([0-9.]*\)x the queries per CPU.*/\1 \2 \3/p' "$OUT/dns.txt")
        row "DNS queries/s (dnsperf, vs dnsmasq)" "$s_qps" "$d_qps" "${r_qps}x" ">= 1.5x" "shoal $s_spread, dnsmasq $d_spread"
        row "DNS p99 latency, us" "$s_p99" "$d_p99" "${r_p99}x" "<= 1.0x" ""
        row "DNS queries per CPU-second" "" "" "${r_cpu}x" "" ""
        ;;
    mesh)
        ./scripts/bench-mesh.sh throughput | tee "$OUT/mesh.txt"
        while read -r services keep new; do
            row "ebpf/nftables, $services services, keep-alive" "" "" "${keep}x" "" ""
            row "ebpf/nftables, $services services, new conn." "" "" "${new}x" ">= 1.3x" ""
        done < <(sed -n 's/^ *ebpf\/nftables, \([0-9]*\) services: keep-alive \([0-9.]*\)x, new connections \([0-9.]*\)x/\1 \2 \3/p' "$OUT/mesh.txt")
        read -r keep new < <(sed -n 's/^ *mesh\/direct, ebpf: keep-alive \([0-9.]*\)x, new connections \([0-9.]*\)x/\1 \2/p' "$OUT/mesh.txt")
        row "mesh/direct (ebpf), keep-alive" "" "" "${keep}x" ">= 1.0x" ""
        row "mesh/direct (ebpf), new connections" "" "" "${new}x" ">= 0.97x" ""
        ;;
    program)
        ./scripts/bench-mesh.sh program | tee "$OUT/program.txt"
        # The goals at 50k backends: the eBPF engine's, and nftables' element updates.
        goal() { [ "$2" = 50000 ] || return 0; case "$1 $3" in
            "ebpf full") echo '<= 50ms' ;; "ebpf one") echo '<= 100us' ;; "nftables one") echo '<= 10ms' ;; esac; }
        while read -r engine backends full add remove; do
            row "$engine: program $backends backends" "$full" "" "" "$(goal "$engine" "$backends" full)" ""
            row "$engine: add / remove one at $backends" "$add / $remove" "" "" "$(goal "$engine" "$backends" one)" ""
        done < <(awk '($1 == "ebpf" || $1 == "nftables") && $2 ~ /^[0-9]+$/ {print $1, $2, $3, $4, $5}' "$OUT/program.txt")
        ;;
    *)
        echo "bench: no benchmark named $name (dns, mesh, program)" >&2
        exit 2
        ;;
    esac
done

echo
echo "Machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r); outputs in $OUT"
printf '%-44s %14s %14s %8s %10s %s\n' benchmark shoal anchor ratio goal spread
printf '%s\n' "${rows[@]}"
