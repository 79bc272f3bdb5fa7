#!/usr/bin/env bash
# Two hosts; while VM2 streams validated messages to VM1 over rxe0 and rxe1, VM1 starts
# dropping every packet of rail 1 (netem loss 100% on eth1). VM2's RDMA WRITEs on rxe1 run
# out of retries (quickly: BRAID_IB_TIMEOUT/RETRY_CNT are small here): VM2 gives lane 1 up
# with a completion error naming the device, GID, QPN, the peer and "retry", tells VM1, and
# what lane 1 left in doubt is rechecked with VM1 and written again on rxe0. Every message
# must arrive intact, and both sides must report lane 1 down with its cause.
# usage: two_hosts_retry.sh RAIL_PEER_BINARY      (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
n=${BRAID_RETRY_MESSAGES:-200}
set +e
"$here/run_in_vm.sh" --two --timeout 400 --log "$log" -- sh -c "
  export BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_IB_TIMEOUT=16 BRAID_IB_RETRY_CNT=3
  export BRAID_LOG_LEVEL=info
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    # The fault goes in 1 s after the server accepted (the stream is under way), not at a
    # fixed time: the other VM may boot seconds later, and a rail that drops everything
    # before the queue pairs connect fails the connection instead.
    timeout -k 5 200 '$peer' server $port >/tmp/server.log 2>&1 &
    srv=\$!
    (for i in \$(seq 1 1200); do
       grep -q 'connected (accepted)' /tmp/server.log && break
       sleep 0.1
     done
     sleep 1
     tc qdisc add dev eth1 root netem loss 100% && echo 'vm1: rail 1 now drops everything') &
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
grep -q "vm1: rail 1 now drops everything" "$log" || { echo "FAIL: the fault was not injected"; exit 1; }
[ $rc -eq 0 ] || { echo "FAIL: the peers exited with $rc"; grep -E "rail_peer|lane|error" "$log" | head -20; exit 1; }
grep -q "server: all messages intact" "$log" || { echo "FAIL: the server did not confirm"; exit 1; }
down=$(grep -m1 -E "^\[vm2\].*lane 1 .* is down:" "$log" || true)
[ -n "$down" ] || { echo "FAIL: the client did not report lane 1 down"; exit 1; }
echo "client: $down"
for want in "completion-error" "retry" "rxe1:1" "qpn" "10.77.0.1"; do
  grep -q -- "$want" <<<"$down" || { echo "FAIL: the lane-down line does not mention '$want'"; exit 1; }
done
grep -q -E "^\[vm1\].*lane 1 .* is down:.*peer gave the lane up" "$log" ||
  { echo "FAIL: the server did not give lane 1 up on its peer's word"; exit 1; }
grep -q -E "^\[vm2\] stats rail 1 state down failures 1" "$log" ||
  { echo "FAIL: the client's stats do not show lane 1 down once"; exit 1; }
grep -q -E "^\[vm2\] stats rail 0 state (up|probing)" "$log" ||
  { echo "FAIL: the client's stats do not show lane 0 up"; exit 1; }
secs=$(grep -m1 "vm2: client exit" "$log" | awk '{print $7}')
echo "PASS: $n MiB crossed intact although rail 1 dropped everything mid-stream (${secs} s); lane 1 reported down on both sides"
