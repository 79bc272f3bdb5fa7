#!/usr/bin/env bash
# Two hosts; while VM2 streams validated messages to VM1 over rxe0 and rxe1, both RDMA rails
# die while the TCP path on eth0 stays up: VM1 drops every RoCE v2 packet (UDP 4791) on both
# links. The endpoint must move to TCP instead of failing: every message arrives intact,
# both sides log the move, and the stats show the verbs lanes down and the TCP rail
# carrying data.
# Why not `rdma link delete`: rxe cannot take a device from a process that has it open (it
# has no user-context disassociation), so the delete blocks until braid exits; FAULT=delete
# runs it anyway, to see that on a newer kernel.
# usage: two_hosts_degrade.sh RAIL_PEER_BINARY      (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1
fault=${FAULT:-drop}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
n=${BRAID_DEGRADE_MESSAGES:-160}
if [ "$fault" = drop ]; then
  inject='for d in eth0 eth1; do
            tc qdisc add dev $d root handle 1: prio &&
            tc filter add dev $d parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 4791 0xffff action drop || exit 1
          done; echo "vm1: RoCE v2 packets now dropped on both links"'
else
  inject='timeout 60 rdma link delete rxe0 && timeout 60 rdma link delete rxe1 &&
          echo "vm1: both RDMA devices deleted"; rdma link show'
fi
set +e
"$here/run_in_vm.sh" --two --timeout 400 --log "$log" -- sh -c "
  export BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_IB_TIMEOUT=16 BRAID_IB_RETRY_CNT=3
  export BRAID_LOG_LEVEL=info
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    timeout -k 5 200 '$peer' server $port >/tmp/server.log 2>&1 &
    srv=\$!
    (for i in \$(seq 1 1200); do
       grep -q 'connected (accepted)' /tmp/server.log && break
       sleep 0.1
     done
     sleep 1
     $inject) &
    wait \$srv
    rc=\$?
    cat /tmp/server.log
    exit \$rc
  else
    start=\$(date +%s)
    timeout -k 5 200 '$peer' client \$BRAID_VM_PEER_IP0 $port $n 1 4
    rc=\$?
    echo \"vm2: client exit \$rc after \$(( \$(date +%s) - start )) s\"
    exit \$rc
  fi"
rc=$?
set -e
[ $rc -ne 77 ] || exit 77
grep -q -E "vm1: (both RDMA devices deleted|RoCE v2 packets now dropped)" "$log" ||
  { echo "FAIL: the fault was not injected"; grep "vm1" "$log" | tail -5; exit 1; }
[ $rc -eq 0 ] || { echo "FAIL: the peers exited with $rc"; grep -E "rail_peer|lane|TCP|error" "$log" | head -20; exit 1; }
grep -q "server: all messages intact" "$log" || { echo "FAIL: the server did not confirm"; exit 1; }
for vm in vm1 vm2; do
  grep -q -E "^\[$vm\].*every verbs lane is down .*the endpoint goes on over TCP" "$log" ||
    { echo "FAIL: $vm did not report the move to TCP"; exit 1; }
done
grep -q -E "^\[vm2\] stats rail 0 state (up|probing)" "$log" ||
  { echo "FAIL: the client's stats do not show the TCP rail up"; exit 1; }
tcp=$(grep -E "^\[vm2\] rail 0 bytes" "$log" | awk '{print $5}')
[ -n "$tcp" ] && [ "$tcp" -gt 0 ] || { echo "FAIL: the TCP rail carried no payload"; exit 1; }
lanes=$(grep -c -E "^\[vm2\] stats rail [12] state down" "$log" || true)
[ "$lanes" = 2 ] || { echo "FAIL: the client's stats do not show both verbs lanes down"; exit 1; }
secs=$(grep -m1 "vm2: client exit" "$log" | awk '{print $7}')
echo "PASS: $n MiB crossed intact although both RDMA rails died mid-stream ($fault, ${secs} s) with TCP up: the endpoint moved to TCP (rail 0: $tcp bytes after the move)"
