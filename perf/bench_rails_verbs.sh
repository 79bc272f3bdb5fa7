#!/usr/bin/env bash
# The striping benchmark over verbs (not a test): the two-VM Soft-RoCE testbed
# (tests/softroce/run_in_vm.sh --two), rails rxe0 on eth0 and rxe1 on eth1, VM2 sends to
# VM1 with braid_send_bw over verbs, receiver's figures (VM1), every ratio against runs of
# the same session. Emulated RDMA is slow (a few MB/s per rail): the figures are small and
# only their ratios mean something.
#
#   perf/bench_rails_verbs.sh [BUILD_DIR] [--json FILE] [--iters N] [--fast MBIT] [--slow MBIT]
#
# Both rails are shaped with netem on VM2's egress (eth0 and eth1), below what an emulated
# rail moves unshaped (60-80 Mbit/s here, bound by the VMs' one vCPU each), so the links
# and not the CPU set the pace:
# 1. rails of FAST and SLOW Mbit/s (default 32 and 8, the 4:1 of the TCP benchmark): each
#    rail alone, then both with adaptive and roundrobin, at -t 1 and -t 4, 2 MiB messages
#    (each message pays tens of ms of fixed cost under emulation, a CTS round trip and the
#    FINs: at 512 KiB that alone holds -t 1 under 0.9 of the rails' sum)
#    (N/2 of them at -t 1, N at -t 4: the receiver's window opens at the last warm-up
#    message, when the next ones may have partly landed; more messages keep that small).
# 2. two rails of SLOW*2 Mbit/s: both / one (-t 4).
# 3. a competing flow: FAST and SLOW rails, adaptive, -t 4, and an iperf3 flow over the fast
#    rail from 3 s for 4 s: the fast rail's share before and during, and braid's rate during
#    it against the capacity left to it (FAST + SLOW minus what iperf3 got).
# 4. a rail cut and its return: two rails of SLOW*2 Mbit/s, adaptive, -t 4, rail 1 dropping
#    every packet (netem loss 100%) from 3 s for 4 s, lanes failing after BRAID_IB_TIMEOUT=14
#    and BRAID_IB_RETRY_CNT=3 (4 x 67 ms): the stall, the detection and the rejoin times.
# Needs root, qemu and the Soft-RoCE cache (tests/softroce/setup.sh). About seven minutes.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=build
if [[ $# -gt 0 && $1 != --* ]]; then build=$1; shift; fi
json=""
iters=24
fast=32
slow=8
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --slow) slow=$2; shift 2 ;;
    --fast) fast=$2; shift 2 ;;
    *) echo "usage: bench_rails_verbs.sh [BUILD_DIR] [--json FILE] [--iters N] [--fast MBIT] [--slow MBIT]" >&2
       exit 2 ;;
  esac
done
build=$(cd "$build" && pwd) || exit 2
tool="$build/perf/braid_send_bw"
[[ -x $tool ]] || { echo "bench_rails_verbs: $tool not built" >&2; exit 2; }
out="$build/bench_rails_verbs"
rm -rf "$out" && mkdir -p "$out"
# name  hca        policy      depth  rail 0 and rail 1 Mbit/s
eq=$((slow * 2))
runs="r0_t1 rxe0 adaptive 1 $fast $slow
r1_t1 rxe1 adaptive 1 $fast $slow
adaptive_t1 rxe0,rxe1 adaptive 1 $fast $slow
roundrobin_t1 rxe0,rxe1 roundrobin 1 $fast $slow
r0_t4 rxe0 adaptive 4 $fast $slow
r1_t4 rxe1 adaptive 4 $fast $slow
adaptive_t4 rxe0,rxe1 adaptive 4 $fast $slow
roundrobin_t4 rxe0,rxe1 roundrobin 4 $fast $slow
equal_one_t4 rxe0 adaptive 4 $eq $eq
equal_both_t4 rxe0,rxe1 adaptive 4 $eq $eq"
echo "$runs" >"$out/runs.txt"
port=$((20000 + RANDOM % 20000))
# Both VMs walk the same list: VM1 serves each run in turn (a bandwidth server exits after
# one test), VM2 shapes its eth1 egress and runs the client (which retries until the
# server listens).
"$here/../tests/softroce/run_in_vm.sh" --two --timeout 900 --log "$out/vm.log" -- sh -c "
  export BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_LOG_LEVEL=warn BRAID_TIMEOUT_MS=30000
  i=0
  while read -r name hca policy depth mbit0 mbit1; do
    i=\$((i + 1))
    p=\$(( $port + i ))
    if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
      BRAID_IB_HCA=\$hca timeout -k 5 240 '$tool' -p \$p --json '$out/'\$name.json \
        >'$out/'\$name.server.txt 2>&1 || echo \"vm1: \$name failed\"
    else
      tc qdisc replace dev eth0 root netem rate \${mbit0}mbit
      tc qdisc replace dev eth1 root netem rate \${mbit1}mbit
      # The other VM may boot later than the client's 5 s of connect retries.
      for attempt in 1 2 3 4 5 6; do
        BRAID_IB_HCA=\$hca BRAID_STRIPE_POLICY=\$policy timeout -k 5 240 '$tool' \$BRAID_VM_PEER_IP0 \
          -p \$p -s 2M -n \$(( depth == 1 ? $(( iters / 2 )) : $iters )) -t \$depth --stats >'$out/'\$name.client.txt 2>&1 && break
        grep -q refused '$out/'\$name.client.txt || { echo \"vm2: \$name failed\"; break; }
      done
      echo \"vm2: \$name done\"
    fi
  done <'$out/runs.txt'
  # 3. and 4.: one server each on VM1; VM2 drives the client, iperf3 and the cut.
  p=\$(( $port + 100 ))
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    iperf3 -s -1 -p \$(( p + 1000 )) >/dev/null 2>&1 &
    timeout -k 5 240 '$tool' -p \$p >'$out/comp.server.txt' 2>&1 || echo \"vm1: comp failed\"
    BRAID_IB_TIMEOUT=14 BRAID_IB_RETRY_CNT=3 timeout -k 5 240 '$tool' -p \$(( p + 1 )) \
      >'$out/cut.server.txt' 2>&1 || echo \"vm1: cut failed\"
  else
    started() { for i in \$(seq 1 300); do [ -s \"\$1\" ] && return 0; sleep 0.1; done; return 1; }
    tc qdisc replace dev eth0 root netem rate ${fast}mbit
    tc qdisc replace dev eth1 root netem rate ${slow}mbit
    sleep 1
    timeout -k 5 240 '$tool' \$BRAID_VM_PEER_IP0 -p \$p -s 512K -n $(( iters * 5 )) -t 4 \
      --timeline '$out/comp.jsonl' >'$out/comp.client.txt' 2>&1 &
    c=\$!
    started '$out/comp.jsonl'; sleep 3
    date +%s%3N >'$out/comp.t0'
    iperf3 -c \$BRAID_VM_PEER_IP0 -p \$(( p + 1000 )) -t 4 -J >'$out/iperf3.json' 2>/dev/null
    date +%s%3N >'$out/comp.t1'
    wait \$c || echo \"vm2: comp failed\"
    tc qdisc replace dev eth0 root netem rate ${eq}mbit
    tc qdisc replace dev eth1 root netem rate ${eq}mbit
    sleep 1
    BRAID_IB_TIMEOUT=14 BRAID_IB_RETRY_CNT=3 timeout -k 5 240 '$tool' \$BRAID_VM_PEER_IP0 \
      -p \$(( p + 1 )) -s 512K -n $(( iters * 5 )) -t 4 --timeline '$out/cut.jsonl' \
      >'$out/cut.client.txt' 2>&1 &
    c=\$!
    started '$out/cut.jsonl'; sleep 3
    date +%s%3N >'$out/cut.t0'
    tc qdisc replace dev eth1 root netem rate ${eq}mbit loss 100%
    sleep 4
    date +%s%3N >'$out/cut.t1'
    tc qdisc replace dev eth1 root netem rate ${eq}mbit
    wait \$c || echo \"vm2: cut failed\"
  fi"
rc=$?
[[ $rc == 77 ]] && { echo "bench_rails_verbs: the VMs could not start (skipped)"; exit 77; }
grep -E "failed" "$out/vm.log" && echo "bench_rails_verbs: some runs failed (logs in $out)" >&2
comp_line=$(python3 "$here/rails_timeline.py" competing "$out/comp.jsonl" "$(cat "$out/comp.t0")" \
  "$(cat "$out/comp.t1")" "$out/iperf3.json" "$fast" "$slow" 2>/dev/null)
cut_line=$(python3 "$here/rails_timeline.py" cut "$out/cut.jsonl" 1 "$(cat "$out/cut.t0")" \
  "$(cat "$out/cut.t1")" "$eq" 2>/dev/null)
python3 - "$out" "$slow" "$iters" "$json" "$fast" "$comp_line" "$cut_line" <<'PY'
import json, os, sys
out, slow, iters, dest, fast = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
comp, cut = sys.argv[6].split(), sys.argv[7].split()
mbit = {}
for name in [l.split()[0] for l in open(os.path.join(out, "runs.txt")) if l.strip()]:
    try:
        r = json.load(open(os.path.join(out, name + ".json")))["results"][0]
        mbit[name] = r["bw_average_mb_per_sec"] * 1048576 * 8 / 1e6
    except Exception:
        mbit[name] = 0.0
    print("  %-16s %8.2f Mbit/s" % (name, mbit[name]))
def ratio(a, b):
    return round(a / b, 2) if b > 0 else 0.0
ratios = {}
for t in ("t1", "t4"):
    s = mbit["r0_" + t] + mbit["r1_" + t]
    ratios["adaptive_over_sum_" + t] = ratio(mbit["adaptive_" + t], s)
    ratios["adaptive_over_roundrobin_" + t] = ratio(mbit["adaptive_" + t], mbit["roundrobin_" + t])
    ratios["roundrobin_over_sum_" + t] = ratio(mbit["roundrobin_" + t], s)
ratios["equal_both_over_one_t4"] = ratio(mbit["equal_both_t4"], mbit["equal_one_t4"])
print("bench_rails_verbs: rails shaped to %g and %g Mbit/s (netem; equal: %g each), 2 MiB x %d (-t 1) and x %d (-t 4), receiver's figures" % (fast, slow, 2 * slow, iters // 2, iters))
competing = {}
if len(comp) == 7:
    competing = dict(zip(["fast_share_before_pct", "mbit_before", "fast_share_during_pct", "mbit_during",
                          "iperf3_mbit", "capacity_left_mbit", "during_over_left"], map(float, comp)))
    ratios["competing_over_capacity_left"] = competing["during_over_left"]
    print("bench_rails_verbs: iperf3 on the fast rail from 3 s for 4 s (adaptive, -t 4, sender's timeline)")
    print("  before: fast rail %.1f%% of the bytes, braid %.1f Mbit/s" % (competing["fast_share_before_pct"], competing["mbit_before"]))
    print("  with iperf3 (%.1f Mbit/s): fast rail %.1f%%, braid %.1f Mbit/s of the %.1f left: %.2f (target >= 0.85)"
          % (competing["iperf3_mbit"], competing["fast_share_during_pct"], competing["mbit_during"],
             competing["capacity_left_mbit"], competing["during_over_left"]))
else:
    print("bench_rails_verbs: the competing-flow run gave no figures (logs in %s)" % out)
railcut = {}
if len(cut) == 7:
    railcut = dict(zip(["stall_ms", "detect_ms", "rejoin_ms", "rail1_share_after_pct", "cut_t_ms", "up_t_ms",
                        "below_half_ms"], map(float, cut)))
    print("bench_rails_verbs: rail 1 drops everything 3 s into an adaptive run (two %g Mbit/s rails, -t 4, lanes fail after 4 x 67 ms), for 4 s" % (2 * slow))
    print("  stall %.0f ms (target <= %.0f: 2x the lane's detection, 4 x 67 ms); below half a rail %.0f ms; lane down %.0f ms "
          "after the cut; back %.0f ms after the loss ended; then %.1f%% of the bytes"
          % (railcut["stall_ms"], 2 * 4 * 67.1, railcut["below_half_ms"], railcut["detect_ms"], railcut["rejoin_ms"],
             railcut["rail1_share_after_pct"]))
else:
    print("bench_rails_verbs: the rail-cut run gave no figures (logs in %s)" % out)
for k in sorted(ratios):
    print("  %-32s %5.2f" % (k, ratios[k]))
if dest:
    json.dump({"fast_mbit": fast, "slow_mbit": slow, "equal_mbit": 2 * slow, "message_bytes": 2 << 20, "iters": iters,
               "receiver_mbit_per_sec": mbit, "ratios": ratios, "competing": competing, "rail_cut": railcut},
              open(dest, "w"), indent=1)
    print("bench_rails_verbs: wrote " + dest)
PY
