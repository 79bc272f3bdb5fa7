#!/usr/bin/env bash
# The NCCL plugin across two hosts (two Soft-RoCE VMs), over a device fused by makeVDevice
# from rxe0 and rxe1, with a rail cut mid-run: VM1 runs the harness's receiver, VM2 its
# sender (the handle goes over an out-of-band TCP socket on eth0, as NCCL's bootstrap would
# carry it). One second after the connection is up, VM1 drops every packet on eth1 (rail 1)
# for good. The plugin carries on over rxe0: every step of the harness passes, every byte is
# intact, and NCCL's log (NCCL_DEBUG=INFO) shows the lane given up.
# usage: two_hosts_nccl.sh HARNESS PLUGIN        (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
h=$1 p=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
rounds=${BRAID_NCCL_ROUNDS:-8}
set +e
"$here/run_in_vm.sh" --two --timeout 400 --log "$log" -- sh -c "
  export NCCL_DEBUG=INFO BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_IB_TIMEOUT=16 BRAID_IB_RETRY_CNT=3
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    timeout -k 5 300 '$h' recv --plugin '$p' --fuse --oob-listen $port --repeat $rounds --max-size 16777216 >/tmp/recv.log 2>&1 &
    pid=\$!
    (for i in \$(seq 1 1200); do
       grep -q 'accepted after' /tmp/recv.log && break
       sleep 0.1
     done
     sleep 1
     tc qdisc add dev eth1 root netem loss 100% && echo 'vm1: rail 1 now drops everything') &
    wait \$pid
    rc=\$?
    cat /tmp/recv.log
    exit \$rc
  else
    timeout -k 5 300 '$h' send --plugin '$p' --fuse --oob \$BRAID_VM_PEER_IP0:$port --repeat $rounds --max-size 16777216
  fi"
rc=$?
set -e
[ $rc -ne 77 ] || exit 77
grep -q "vm1: rail 1 now drops everything" "$log" || { echo "FAIL: the fault was not injected"; tail -20 "$log"; exit 1; }
[ $rc -eq 0 ] || { echo "FAIL: the harness exited with $rc"; grep -E "FAIL|lane|NET/braid" "$log" | head -30; exit 1; }
for vm in vm1 vm2; do
  grep -q -E "^\[$vm\].*v11: all steps passed" "$log" || { echo "FAIL: $vm did not pass every step"; exit 1; }
  grep -q -E "^\[$vm\].*on device 2 \(rxe0\+rxe1\): RDMA verbs over 2 rail" "$log" ||
    { echo "FAIL: $vm's connection was not striped over both RDMA rails"; grep "comm " "$log"; exit 1; }
done
down=$(grep -m1 -E "^\[vm2\].*NCCL (WARN|INFO) NET/braid/transport: .*lane 1 .* is down:" "$log" || true)
[ -n "$down" ] || { echo "FAIL: NCCL's log on the sender does not show lane 1 going down"; grep -E "lane|rail" "$log" | head; exit 1; }
echo "sender: $down"
r=$(grep -c -E "^\[vm1\].*round [0-9]+ of $rounds: .* intact" "$log" || true)
echo "PASS: $rounds rounds of 12 sizes (0 to 16 MiB) and every other step intact across two hosts over a fused rxe0+rxe1 device, rail 1 cut after the connection came up ($r rounds reported)"
