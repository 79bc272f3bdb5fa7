#!/usr/bin/env bash
# Two hosts, two rails: VM1 and VM2 joined by two links (rxe0 over 10.77.0.0/24, rxe1 over
# 10.78.0.0/24). rail_peer in VM2 sends validated messages to rail_peer in VM1 over the
# verbs transport (the TCP control connection runs on eth0); every message must arrive
# intact and both verbs rails must carry payload.
# usage: two_hosts.sh RAIL_PEER_BINARY       (exit 77: the VMs could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peer=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
set +e
"$here/run_in_vm.sh" --two --timeout 400 --log "$log" -- sh -c "
  export BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0' BRAID_LOG_LEVEL=info
  if [ \"\$BRAID_VM_INDEX\" = 1 ]; then
    exec timeout -k 5 300 '$peer' server $port
  else
    exec timeout -k 5 300 '$peer' client \$BRAID_VM_PEER_IP0 $port 8 2
  fi"
rc=$?
set -e
[ $rc -eq 0 ] || { echo "FAIL: the peers exited with $rc"; exit $rc; }
grep -q "server: all messages intact" "$log" || { echo "FAIL: the server did not confirm"; exit 1; }
for r in 0 1; do
  bytes=$(grep -E "^\[vm2\] rail $r bytes" "$log" | awk '{print $5}')
  [ -n "$bytes" ] && [ "$bytes" -gt 0 ] || { echo "FAIL: verbs rail $r carried no payload"; exit 1; }
done
grep -q "verbs rails:.*rxe0.*rxe1" "$log" || { echo "FAIL: the endpoint did not use rxe0 and rxe1"; exit 1; }
echo "PASS: 16 MiB crossed from VM2 to VM1 over rxe0 and rxe1, all intact"
