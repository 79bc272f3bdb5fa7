#!/usr/bin/env bash
# Two hosts; while VM2 streams validated messages to VM1 over rxe0 and rxe1, VM1 starts
# dropping every packet of rail 1 (netem loss 100% on eth1). VM2's RDMA WRITEs on rxe1 run
# out of retries: its endpoint must fail with a completion error naming the device, GID,
# QPN, the peer and "retry", quickly (BRAID_IB_TIMEOUT/RETRY_CNT are small here), and VM1
# must see its peer go away instead of hanging.
# usage: two_hosts_retry.sh RAIL_PEER_BINARY      (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
set +e
"$here/run_in_vm.sh" --two --timeout 400 --log "$log" -- sh -c "
  export BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_IB_TIMEOUT=16 BRAID_IB_RETRY_CNT=3
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    # The fault goes in 2 s after the server accepted (the stream is under way), not at a
    # fixed time: the other VM may boot seconds later, and a rail that drops everything
    # before the queue pairs connect fails the connection instead.
    BRAID_LOG_LEVEL=info timeout -k 5 200 '$peer' server $port >/tmp/server.log 2>&1 &
    srv=\$!
    (for i in \$(seq 1 1200); do
       grep -q 'connected (accepted)' /tmp/server.log && break
       sleep 0.1
     done
     sleep 2
     tc qdisc add dev eth1 root netem loss 100% && echo 'vm1: rail 1 now drops everything') &
    wait \$srv
    rc=\$?
    cat /tmp/server.log
    exit \$rc
  else
    start=\$(date +%s)
    timeout -k 5 200 '$peer' client \$BRAID_VM_PEER_IP0 $port 2000 1
    echo \"vm2: client exit \$? after \$(( \$(date +%s) - start )) s\"
  fi"
rc=$?
set -e
[ $rc -ne 77 ] || exit 77
grep -q "vm1: rail 1 now drops everything" "$log" || { echo "FAIL: the fault was not injected"; exit 1; }
line=$(grep -m1 "rail_peer: send:" "$log" || true)
[ -n "$line" ] || { echo "FAIL: the client did not report a failed send"; exit 1; }
echo "client error: $line"
for want in "completion-error" "retry" "rxe1:1" "qpn" "10.77.0.1"; do
  grep -q -- "$want" <<<"$line" || { echo "FAIL: the error does not mention '$want'"; exit 1; }
done
secs=$(grep -m1 "vm2: client exit" "$log" | awk '{print $7}')
grep -q "vm2: client exit 1 " "$log" || { echo "FAIL: the client did not exit 1"; exit 1; }
grep -q "rail_peer: receive:" "$log" || { echo "FAIL: the server did not see its peer fail"; exit 1; }
echo "PASS: retry exhaustion on rxe1 reported in full after ${secs} s; the server saw the peer go"
