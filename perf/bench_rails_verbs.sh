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
#    rail alone, then both with adaptive and roundrobin, at -t 1 and -t 4, 512 KiB messages
#    (N of them at -t 1, 2N at -t 4: the receiver's window opens at the last warm-up
#    message, when the next ones may have partly landed; more messages keep that small).
# 2. two rails of SLOW*2 Mbit/s: both / one (-t 4).
# Needs root, qemu and the Soft-RoCE cache (tests/softroce/setup.sh). About three minutes.
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
          -p \$p -s 512K -n \$(( depth == 1 ? $iters : 2 * $iters )) -t \$depth --stats >'$out/'\$name.client.txt 2>&1 && break
        grep -q refused '$out/'\$name.client.txt || { echo \"vm2: \$name failed\"; break; }
      done
      echo \"vm2: \$name done\"
    fi
  done <'$out/runs.txt'"
rc=$?
[[ $rc == 77 ]] && { echo "bench_rails_verbs: the VMs could not start (skipped)"; exit 77; }
grep -E "failed" "$out/vm.log" && echo "bench_rails_verbs: some runs failed (logs in $out)" >&2
python3 - "$out" "$slow" "$iters" "$json" "$fast" <<'PY'
import json, os, sys
out, slow, iters, dest, fast = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
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
print("bench_rails_verbs: rails shaped to %g and %g Mbit/s (netem; equal: %g each), 512 KiB x %d (-t 1) and x %d (-t 4), receiver's figures" % (fast, slow, 2 * slow, iters, 2 * iters))
for k in sorted(ratios):
    print("  %-32s %5.2f" % (k, ratios[k]))
if dest:
    json.dump({"fast_mbit": fast, "slow_mbit": slow, "equal_mbit": 2 * slow, "message_bytes": 512 << 10, "iters": iters,
               "receiver_mbit_per_sec": mbit, "ratios": ratios}, open(dest, "w"), indent=1)
    print("bench_rails_verbs: wrote " + dest)
PY
