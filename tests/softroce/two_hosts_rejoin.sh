#!/usr/bin/env bash
# Two hosts; while VM2 streams validated messages to VM1 over rxe0 and rxe1, VM1 drops every
# packet of rail 1 (netem loss 100% on eth1) for 4 s. VM2 gives lane 1 up (retry exceeded,
# quickly: BRAID_IB_TIMEOUT/RETRY_CNT are small here) and goes on over rxe0; it then tries
# the lane again with back-off (new queue pairs offered over the control socket, each
# attempt proved by an empty RDMA WRITE, which fails while the rail drops everything). Once
# the loss is lifted, an attempt succeeds: lane 1 rejoins on both sides and carries payload
# again before the stream ends. Every message must arrive intact.
# usage: two_hosts_rejoin.sh RAIL_PEER_BINARY      (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
n=${BRAID_REJOIN_MESSAGES:-320}
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
     tc qdisc add dev eth1 root netem loss 100% && echo 'vm1: rail 1 now drops everything'
     sleep 4
     tc qdisc del dev eth1 root && echo 'vm1: rail 1 restored') &
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
grep -q "vm1: rail 1 restored" "$log" || { echo "FAIL: the fault was not injected and lifted"; exit 1; }
[ $rc -eq 0 ] || { echo "FAIL: the peers exited with $rc"; grep -E "rail_peer|lane|error" "$log" | head -20; exit 1; }
grep -q "server: all messages intact" "$log" || { echo "FAIL: the server did not confirm"; exit 1; }
grep -q -E "^\[vm2\].*lane 1 .* is down:" "$log" || { echo "FAIL: the client did not give lane 1 up"; exit 1; }
for vm in vm1 vm2; do
  grep -q -E "^\[$vm\].*lane 1 .* is back after [0-9]+ ms" "$log" ||
    { echo "FAIL: $vm did not report lane 1 back"; grep -E "lane 1" "$log" | tail -5; exit 1; }
done
line=$(grep -m1 -E "^\[vm2\] stats rail 1 state (up|probing) failures 1 .* since-rejoin [0-9]+" "$log" || true)
[ -n "$line" ] || { echo "FAIL: the client's stats do not show lane 1 back"; grep "stats rail" "$log"; exit 1; }
since=$(sed -E 's/.*since-rejoin ([0-9]+).*/\1/' <<<"$line")
[ "$since" -gt 0 ] || { echo "FAIL: lane 1 carried nothing after it rejoined"; exit 1; }
back=$(grep -m1 -E "^\[vm2\].*lane 1 .* is back after" "$log" | sed -E 's/.*is back after ([0-9]+) ms.*/\1/')
secs=$(grep -m1 "vm2: client exit" "$log" | awk '{print $7}')
echo "PASS: $n MiB intact; lane 1 was down ${back} ms (4 s of loss), rejoined with new queue pairs and carried $since bytes after (${secs} s)"
