#!/usr/bin/env bash
# Two hosts; while VM2 streams validated messages to VM1 over rxe0 and rxe1, both RDMA rails
# die while the TCP path on eth0 stays up: VM1 drops every RoCE v2 packet (UDP 4791) on both
# links for 3 s. The endpoint must move to TCP instead of failing, and return to RDMA once
# the lanes rejoin: the client pauses 300 ms after every 16 messages (RAIL_PEER_PAUSE), and
# the return happens in such a pause, when nothing is in flight. Every message arrives
# intact, both sides log the move and the return, and the stats show the lanes up again,
# carrying data since the return, and the TCP rail (standby) with what it carried.
# FAULT=flap: the same twice (2 s of drops, 6 s of RoCE), so the endpoint moves to TCP and
# returns twice.
# FAULT=lane0: only rail 0 (eth0) drops RoCE, for good: lane 0, the control lane, fails
# while lane 1 works. The endpoint moves to TCP, lane 1 rejoins, and the endpoint returns to
# RDMA with lane 1 as its control lane; lane 0 stays down.
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
n=${BRAID_DEGRADE_MESSAGES:-240}
if [ "$fault" = flap ]; then
  inject='for round in 1 2; do
            for d in eth0 eth1; do
              tc qdisc add dev $d root handle 1: prio &&
              tc filter add dev $d parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 4791 0xffff action drop || exit 1
            done; echo "vm1: RoCE v2 packets now dropped on both links (round $round)"
            sleep 2
            for d in eth0 eth1; do tc qdisc del dev $d root || exit 1; done
            echo "vm1: RoCE v2 packets pass again (round $round)"
            sleep 6
          done'
elif [ "$fault" = lane0 ]; then
  inject='tc qdisc add dev eth0 root handle 1: prio &&
          tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 4791 0xffff action drop || exit 1
          echo "vm1: RoCE v2 packets now dropped on rail 0 (eth0), for good"'
elif [ "$fault" = drop ]; then
  inject='for d in eth0 eth1; do
            tc qdisc add dev $d root handle 1: prio &&
            tc filter add dev $d parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 4791 0xffff action drop || exit 1
          done; echo "vm1: RoCE v2 packets now dropped on both links"
          sleep 3
          for d in eth0 eth1; do tc qdisc del dev $d root || exit 1; done
          echo "vm1: RoCE v2 packets pass again"'
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
    RAIL_PEER_PAUSE=16:300 timeout -k 5 200 '$peer' client \$BRAID_VM_PEER_IP0 $port $n 1 4
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
  grep -q -E "^\[$vm\].*the verbs lanes are given up: lane [0-9]+, the (control lane|last one), failed .*the endpoint goes on over TCP" "$log" ||
    { echo "FAIL: $vm did not report the move to TCP"; exit 1; }
done
secs=$(grep -m1 "vm2: client exit" "$log" | awk '{print $7}')
if [ "$fault" = delete ]; then  # deleted devices do not come back
  echo "PASS: $n MiB crossed intact although both RDMA devices were deleted ($fault, ${secs} s)"
  exit 0
fi
ctl=0
[ "$fault" = lane0 ] && ctl=1
for vm in vm1 vm2; do
  grep -q -E "^\[$vm\].*back on RDMA after [0-9]+ ms over TCP: .*lane $ctl the control lane" "$log" ||
    { echo "FAIL: $vm did not return to RDMA"; grep -E "lane|RDMA|TCP" "$log" | tail -12; exit 1; }
done
if [ "$fault" = flap ]; then
  for vm in vm1 vm2; do
    c=$(grep -c -E "^\[$vm\].*back on RDMA after [0-9]+ ms over TCP" "$log" || true)
    [ "$c" -ge 2 ] || { echo "FAIL: $vm returned to RDMA $c time(s), twice expected"; grep -E "lanes are given up|back on RDMA" "$log"; exit 1; }
  done
fi
# After the return: the lanes are rails 0 and 1 again, the TCP rail's record follows.
grep -q -E "^\[vm2\] stats rail 2 state standby" "$log" ||
  { echo "FAIL: the client's stats do not show the TCP rail (standby) after the lanes"; grep "stats rail" "$log"; exit 1; }
tcp=$(grep -E "^\[vm2\] rail 2 bytes" "$log" | awk '{print $5}')
[ -n "$tcp" ] && [ "$tcp" -gt 0 ] || { echo "FAIL: the TCP rail carried no payload"; exit 1; }
since=0
lanes="0 1"
if [ "$fault" = lane0 ]; then
  lanes=1
  grep -q -E "^\[vm2\] stats rail 0 state down" "$log" ||
    { echo "FAIL: lane 0 does not show down although rail 0 drops RoCE for good"; grep "stats rail" "$log"; exit 1; }
fi
for r in $lanes; do
  line=$(grep -m1 -E "^\[vm2\] stats rail $r state (up|probing) .* since-rejoin [0-9]+" "$log" || true)
  [ -n "$line" ] || { echo "FAIL: the client's stats do not show lane $r back"; grep "stats rail" "$log"; exit 1; }
  since=$((since + $(sed -E 's/.*since-rejoin ([0-9]+).*/\1/' <<<"$line")))
done
[ "$since" -gt 0 ] || { echo "FAIL: the lanes carried nothing after the return"; exit 1; }
tcpms=$(grep -m1 -E "^\[vm2\].*back on RDMA after" "$log" | sed -E 's/.*back on RDMA after ([0-9]+) ms.*/\1/')
if [ "$fault" = flap ]; then
  echo "PASS: $n MiB crossed intact: both RDMA rails dropped RoCE twice for 2 s; the endpoint moved to TCP and back to RDMA twice (first return after $tcpms ms), the lanes carried $since bytes since the last (${secs} s)"
  exit 0
fi
if [ "$fault" = lane0 ]; then
  echo "PASS: $n MiB crossed intact: rail 0 dropped RoCE for good mid-stream; the endpoint moved to TCP (it carried $tcp bytes), returned to RDMA after $tcpms ms with lane 1 as control lane, which carried $since bytes since (${secs} s)"
  exit 0
fi
echo "PASS: $n MiB crossed intact: both RDMA rails died mid-stream for 3 s with TCP up; the endpoint moved to TCP (it carried $tcp bytes), returned to RDMA after $tcpms ms, and the lanes carried $since bytes since (${secs} s)"
