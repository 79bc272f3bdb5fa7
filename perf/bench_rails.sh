#!/usr/bin/env bash
# Multi-rail striping benchmark (not a test): two network namespaces joined by two veth
# rails (tests/netns/rails_lib.sh), the client's egress shaped with tbf, braid_send_bw with
# 8 MiB messages, figures measured by the receiver. Every ratio is against runs of this
# same session.
#
#   perf/bench_rails.sh [BUILD_DIR] [--json FILE] [--iters N] [--plot PNG] [--keep DIR]
#
# 1. rails shaped FAST and SLOW Mbit/s (400 and 100): each rail alone, then both with each
#    BRAID_STRIPE_POLICY, at one message in flight (-t 1) and at 16 (-t 16). Prints
#    adaptive / (sum of the rails alone) and adaptive / roundrobin.
# 2. two equal rails (FAST and FAST): both (adaptive) / one.
# 3. an iperf3 flow on the fast rail mid-run: braid's rate against the capacity left.
# 4. a rail cut and its return: two equal rails of FAST Mbit/s, adaptive, -t 4,
#    BRAID_TIMEOUT_MS=2000, --timeline; rail 1's link goes down 3 s into the run and comes
#    back 4 s later. Prints the stall (time after the cut with the sender below half of one
#    rail's rate), the detection time (cut to the rail's "down" event), the rejoin time
#    (link up to its "up" event) and rail 1's share once back; --plot writes the PNG of
#    throughput per rail over time (perf/plot_rails.py, matplotlib), --keep keeps the
#    timeline.
# Needs root and iproute2 (tc tbf). Takes about three minutes.
set -uo pipefail
build=build
if [[ $# -gt 0 && $1 != --* ]]; then build=$1; shift; fi
json=""
plot=""
keep=""
iters=16
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --plot) plot=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: bench_rails.sh [BUILD_DIR] [--json FILE] [--iters N] [--plot PNG] [--keep DIR]" >&2
       exit 2 ;;
  esac
done
tool="$build/perf/braid_send_bw"
[[ -x $tool ]] || { echo "bench_rails: $tool not built" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "bench_rails: network namespaces need root" >&2; exit 2; }
FAST=${FAST_MBIT:-400}
SLOW=${SLOW_MBIT:-100}
out=$(mktemp -d)
spid=
. "$(dirname "$0")/../tests/netns/rails_lib.sh"
two_rails brail rl 241 "$FAST" "$SLOW"
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
reshape 1 "$FAST"
sleep 0.5
echo "bench_rails: two equal rails of $FAST Mbit/s"
row equal_one_t16 "=rl0" adaptive 16
row equal_both_t16 "rl" adaptive 16
row equal_one_t1 "=rl0" adaptive 1
row equal_both_t1 "rl" adaptive 1

# 3. A competing flow: iperf3 on the fast rail from 3 s into an adaptive run (-t 16,
#    --timeline); the per-rail split before and after, and braid's rate after against the
#    capacity left to it (both rails minus what iperf3 got, as iperf3 measured it).
reshape 1 "$SLOW"
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
  comp_ms=$(date +%s%3N)
  ip netns exec "$B" iperf3 -c 10.241.0.1 -p $((port + 1000)) -t 4 -J >"$out/iperf3.json" 2>/dev/null
  comp_end=$(date +%s%3N)
  wait "$cpid"; wait "$spid"; spid=
  wait "$ipid" 2>/dev/null
  comp_line=$(python3 "$(dirname "$0")/rails_timeline.py" competing "$out/comp.jsonl" "$comp_ms" \
    "$comp_end" "$out/iperf3.json" "$FAST" "$SLOW")
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
# 4. A rail cut and its return (see the header).
declare -A cutfig
reshape 1 "$FAST"
sleep 0.5
port=$((port + 1))
ip netns exec "$A" env BRAID_TIMEOUT_MS=2000 BRAID_LOG_LEVEL=warn timeout -k 5 300 "$tool" \
  -p "$port" --rails rl >"$out/cut.server.txt" 2>&1 &
spid=$!
ip netns exec "$B" env BRAID_TIMEOUT_MS=2000 BRAID_LOG_LEVEL=warn timeout -k 5 300 "$tool" \
  10.241.0.1 -p "$port" --rails rl -s 8M -n $((iters * 7)) -t 4 --timeline "$out/cut.jsonl" \
  >"$out/cut.client.txt" 2>&1 &
cpid=$!
for _ in $(seq 100); do [[ -s $out/cut.jsonl ]] && break; sleep 0.1; done
sleep 3
cut_ms=$(date +%s%3N)
ip -n "$B" link set rl1 down
sleep 4
up_ms=$(date +%s%3N)
ip -n "$B" link set rl1 up
wait "$cpid"; crc=$?
wait "$spid"; src=$?
spid=
if [[ $crc != 0 || $src != 0 ]]; then
  echo "bench_rails: the cut run failed (client $crc, server $src)" >&2
  cat "$out/cut.client.txt" "$out/cut.server.txt" >&2
else
  cut_line=$(python3 "$(dirname "$0")/rails_timeline.py" cut "$out/cut.jsonl" 1 "$cut_ms" "$up_ms" "$FAST")
  read -r stall detect rejoin share1 cut_t up_t slow <<<"$cut_line"
  echo "bench_rails: rail 1 cut 3 s into an adaptive run (two $FAST Mbit/s rails, -t 4, BRAID_TIMEOUT_MS=2000), back 4 s later"
  printf '  stall %s ms (target <= 4000: 2x the timeout; below half a rail %s ms); rail down %s ms after the cut; back %s ms after its link; then %s%% of the bytes\n' \
    "$stall" "$slow" "$detect" "$rejoin" "$share1"
  cutfig[stall_ms]=$stall
  cutfig[below_half_ms]=$slow
  cutfig[detect_ms]=$detect
  cutfig[rejoin_ms]=$rejoin
  cutfig[rail1_share_after_pct]=$share1
  if [[ -n $plot ]]; then
    # The link changes as events of their own, then the plot.
    cp "$out/cut.jsonl" "$out/cut.plot.jsonl"
    printf '{"t_ms": %s, "event": "ip link set rl1 down"}\n{"t_ms": %s, "event": "ip link set rl1 up"}\n' \
      "$cut_t" "$up_t" >>"$out/cut.plot.jsonl"
    py=python3
    /usr/bin/python3 -c "import matplotlib" 2>/dev/null && py=/usr/bin/python3
    "$py" "$(dirname "$0")/plot_rails.py" "$out/cut.plot.jsonl" -o "$plot" \
      --title "braid_send_bw -s 8M -t 4 over two $FAST Mbit/s rails: rail 1 cut, then back"
  fi
  [[ -n $keep ]] && mkdir -p "$keep" && cp "$out/cut.jsonl" "$out/cut.client.txt" "$out/cut.server.txt" "$keep/"
fi

if [[ -n $json ]]; then
  jsonmap() {  # jsonmap NAME: the associative array NAME as a JSON object
    local -n m=$1
    local first=1 k
    printf '{'
    for k in "${!m[@]}"; do
      [[ $first == 1 ]] || printf ','
      first=0
      printf '\n  "%s": %s' "$k" "${m[$k]:-0}"
    done
    printf '}'
  }
  {
    echo "{\"fast_mbit\": $FAST, \"slow_mbit\": $SLOW, \"message_bytes\": 8388608, \"iters\": $iters,"
    printf ' "receiver_mbit_per_sec": '
    jsonmap mbit
    printf ',\n "ratios": '
    jsonmap ratios
    printf ',\n "rail_cut": '
    jsonmap cutfig
    echo "}"
  } >"$json"
  echo "bench_rails: wrote $json"
fi
