#!/usr/bin/env bash
# Multi-rail striping benchmark (not a test): two network namespaces joined by two veth
# rails, the client's egress shaped with tbf, braid_send_bw with 8 MiB messages, figures
# measured by the receiver. Every ratio is against runs of this same session.
#
#   perf/bench_rails.sh [BUILD_DIR] [--json FILE] [--iters N]
#
# 1. rails shaped FAST and SLOW Mbit/s (400 and 100): each rail alone, then both with each
#    BRAID_STRIPE_POLICY, at one message in flight (-t 1) and at 16 (-t 16). Prints
#    adaptive / (sum of the rails alone) and adaptive / roundrobin.
# 2. two equal rails (FAST and FAST): both (adaptive) / one.
# 3. an iperf3 flow on the fast rail mid-run: braid's rate against the capacity left.
# Needs root and iproute2 (tc tbf). Takes about two minutes.
set -uo pipefail
build=build
if [[ $# -gt 0 && $1 != --* ]]; then build=$1; shift; fi
json=""
iters=16
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    *) echo "usage: bench_rails.sh [BUILD_DIR] [--json FILE] [--iters N]" >&2; exit 2 ;;
  esac
done
tool="$build/perf/braid_send_bw"
[[ -x $tool ]] || { echo "bench_rails: $tool not built" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "bench_rails: network namespaces need root" >&2; exit 2; }
FAST=${FAST_MBIT:-400}
SLOW=${SLOW_MBIT:-100}
A=brailA$$
B=brailB$$
out=$(mktemp -d)
spid=
cleanup() {
  [[ -n $spid ]] && kill "$spid" 2>/dev/null
  ip netns del "$A" 2>/dev/null
  ip netns del "$B" 2>/dev/null
  rm -rf "$out"
}
trap cleanup EXIT
ip netns add "$A" && ip netns add "$B" || exit 2
for r in 0 1; do
  ip link add "rl$r" netns "$A" type veth peer name "rl$r" netns "$B"
  ip -n "$A" addr add "10.24$((r + 1)).0.1/24" dev "rl$r"
  ip -n "$B" addr add "10.24$((r + 1)).0.2/24" dev "rl$r"
  ip -n "$A" link set "rl$r" up
  ip -n "$B" link set "rl$r" up
done
ip -n "$A" link set lo up
ip -n "$B" link set lo up
shape() {  # shape RAIL MBIT: the client's (B's) egress on that rail
  ip netns exec "$B" tc qdisc replace dev "rl$1" root tbf rate "$2mbit" burst 256kb latency 50ms
}
shape 0 "$FAST"
shape 1 "$SLOW"
for _ in $(seq 100); do  # braid uses running interfaces only
  n=$( (ip -n "$A" -o link show; ip -n "$B" -o link show) | grep -c "rl[01].*state UP" || true)
  [[ $n -eq 4 ]] && break
  sleep 0.05
done
export BRAID_LOG_LEVEL=${BRAID_LOG_LEVEL:-error}
port=$((30000 + RANDOM % 20000))

# run NAME RAILS POLICY DEPTH: prints the receiver's average in Mbit/s.
run() {
  local name=$1 rails=$2 policy=$3 depth=$4
  port=$((port + 1))
  ip netns exec "$A" env BRAID_STRIPE_POLICY="$policy" timeout -k 5 300 "$tool" -p "$port" \
    --rails "$rails" --json "$out/$name.json" >"$out/$name.server.txt" 2>&1 &
  spid=$!
  ip netns exec "$B" env BRAID_STRIPE_POLICY="$policy" timeout -k 5 300 "$tool" 10.241.0.1 \
    -p "$port" --rails "$rails" -s 8M -n "$iters" -t "$depth" >"$out/$name.client.txt" 2>&1
  local crc=$?
  wait "$spid"
  local src=$?
  spid=
  if [[ $crc != 0 || $src != 0 ]]; then
    echo "bench_rails: $name failed (client $crc, server $src)" >&2
    cat "$out/$name.client.txt" "$out/$name.server.txt" >&2
    echo 0
    return
  fi
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f" % (r["bw_average_mb_per_sec"] * 1048576 * 8 / 1e6))' "$out/$name.json"
}

declare -A mbit
row() {  # row NAME RAILS POLICY DEPTH
  mbit[$1]=$(run "$1" "$2" "$3" "$4")
  printf '  %-28s %8s Mbit/s\n' "$1" "${mbit[$1]}"
}
echo "bench_rails: rails shaped $FAST and $SLOW Mbit/s, 8 MiB x $iters, receiver's figures"
for t in 1 16; do
  row "fast_alone_t$t" "=rl0" adaptive "$t"
  row "slow_alone_t$t" "=rl1" adaptive "$t"
  for p in adaptive weighted roundrobin single; do
    row "${p}_t$t" "rl" "$p" "$t"
  done
done
shape 1 "$FAST"
sleep 0.5
echo "bench_rails: two equal rails of $FAST Mbit/s"
row equal_one_t16 "=rl0" adaptive 16
row equal_both_t16 "rl" adaptive 16
row equal_one_t1 "=rl0" adaptive 1
row equal_both_t1 "rl" adaptive 1

# 3. A competing flow: iperf3 on the fast rail from 3 s into an adaptive run (-t 16,
#    --timeline); the per-rail split before and after, and braid's rate after against the
#    capacity left to it (both rails minus what iperf3 got, as iperf3 measured it).
shape 1 "$SLOW"
if command -v iperf3 >/dev/null; then
  port=$((port + 1))
  ip netns exec "$A" iperf3 -s -1 -p $((port + 1000)) >/dev/null 2>&1 &
  ipid=$!
  ip netns exec "$A" timeout -k 5 300 "$tool" -p "$port" --rails rl >"$out/comp.server.txt" 2>&1 &
  spid=$!
  ip netns exec "$B" timeout -k 5 300 "$tool" 10.241.0.1 -p "$port" --rails rl -s 8M \
    -n $((iters * 6)) -t 16 --timeline "$out/comp.jsonl" >"$out/comp.client.txt" 2>&1 &
  cpid=$!
  sleep 3
  comp_ms=$(python3 -c 'import json,sys; ls=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(ls[-1]["t_ms"] if ls else 0)' "$out/comp.jsonl")
  ip netns exec "$B" iperf3 -c 10.241.0.1 -p $((port + 1000)) -t 4 -J >"$out/iperf3.json" 2>/dev/null
  comp_end=$(python3 -c 'import json,sys; ls=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(ls[-1]["t_ms"] if ls else 0)' "$out/comp.jsonl")
  wait "$cpid"; wait "$spid"; spid=
  wait "$ipid" 2>/dev/null
  read -r comp_line < <(python3 - "$out/comp.jsonl" "$comp_ms" "$comp_end" "$out/iperf3.json" "$FAST" "$SLOW" <<'PY'
import json, sys
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
samples = [s for s in samples if "rails" in s]
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
fast, slow = float(sys.argv[5]), float(sys.argv[6])
try:
    ip = json.load(open(sys.argv[4]))["end"]["sum_received"]["bits_per_second"] / 1e6
except Exception:
    ip = 0.0
def window(lo, hi):
    b = [0, 0]; ms = 0.0
    for s in samples:
        if lo <= s["t_ms"] < hi:
            for r in s["rails"][:2]:
                b[r["rail"]] += r["bytes"]
            ms += s.get("interval_ms", 100)
    tot = b[0] + b[1]
    return (b[0] / tot if tot else 0), (tot * 8 / (ms / 1000) / 1e6 if ms else 0)
s0, r0 = window(0, t0)
s1, r1 = window(t0 + 1000, t1)
left = fast + slow - ip
print("%.1f %.1f %.1f %.1f %.1f %.1f %.2f" % (100 * s0, r0, 100 * s1, r1, ip, left, r1 / left if left > 0 else 0))
PY
)
  read -r sh0 r0 sh1 r1 ipm left rat <<<"$comp_line"
  echo "bench_rails: iperf3 on the fast rail from 3 s (adaptive, -t 16)"
  printf '  before: fast rail %s%% of the bytes, braid %s Mbit/s\n' "$sh0" "$r0"
  printf '  with iperf3 (%s Mbit/s): fast rail %s%%, braid %s Mbit/s of the %s left: %s (target >= 0.85)\n' \
    "$ipm" "$sh1" "$r1" "$left" "$rat"
  mbit[competing_before]=$r0
  mbit[competing_after]=$r1
  mbit[competing_iperf3]=$ipm
  competing_ratio=$rat
fi

ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print("%.2f" % (a/b if b > 0 else 0))' "$1" "$2"; }
sum() { python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$1" "$2"; }
echo "bench_rails: ratios"
declare -A ratios
for t in 1 16; do
  s=$(sum "${mbit[fast_alone_t$t]}" "${mbit[slow_alone_t$t]}")
  ratios[adaptive_over_sum_t$t]=$(ratio "${mbit[adaptive_t$t]}" "$s")
  ratios[adaptive_over_roundrobin_t$t]=$(ratio "${mbit[adaptive_t$t]}" "${mbit[roundrobin_t$t]}")
  ratios[roundrobin_over_sum_t$t]=$(ratio "${mbit[roundrobin_t$t]}" "$s")
  printf '  -t %-2s adaptive / sum of rails alone %s (target >= 0.90), adaptive / roundrobin %s%s, roundrobin / sum %s\n' \
    "$t" "${ratios[adaptive_over_sum_t$t]}" "${ratios[adaptive_over_roundrobin_t$t]}" \
    "$([[ $t == 1 ]] && echo ' (target >= 1.6)')" "${ratios[roundrobin_over_sum_t$t]}"
done
[[ -n ${competing_ratio:-} ]] && ratios[competing_over_capacity_left]=$competing_ratio
for t in 1 16; do
  ratios[equal_both_over_one_t$t]=$(ratio "${mbit[equal_both_t$t]}" "${mbit[equal_one_t$t]}")
  printf '  -t %-2s two equal rails / one %s (target >= 1.8)\n' "$t" "${ratios[equal_both_over_one_t$t]}"
done
if [[ -n $json ]]; then
  {
    echo "{\"fast_mbit\": $FAST, \"slow_mbit\": $SLOW, \"message_bytes\": 8388608, \"iters\": $iters,"
    echo " \"receiver_mbit_per_sec\": {"
    first=1
    for k in "${!mbit[@]}"; do
      [[ $first == 1 ]] || echo ","
      first=0
      printf '  "%s": %s' "$k" "${mbit[$k]:-0}"
    done
    echo "}, \"ratios\": {"
    first=1
    for k in "${!ratios[@]}"; do
      [[ $first == 1 ]] || echo ","
      first=0
      printf '  "%s": %s' "$k" "${ratios[$k]}"
    done
    echo "}}"
  } >"$json"
  echo "bench_rails: wrote $json"
fi
