#!/usr/bin/env bash
# Soft-RoCE comes up in the VM: rxe0 and rxe1 active, and perftest moves data over rxe0.
# Run on the host; it boots the VM through run_in_vm.sh (exit 77 = VM could not start).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run_in_vm.sh" --timeout 300 -- sh -c '
  set -e
  x=$('"$here"'/gid_index.sh rxe0)
  for d in rxe0 rxe1; do
    ibv_devinfo -d $d | grep -q PORT_ACTIVE || { echo "FAIL: $d not active"; exit 1; }
  done
  timeout -k 5 120 ib_write_bw -d rxe0 -x $x -s 65536 -n 100 >/tmp/srv.log 2>&1 &
  ok=0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    if timeout -k 5 60 ib_write_bw -d rxe0 -x $x -s 65536 -n 100 10.77.0.1 >/tmp/cli.log 2>&1; then ok=1; break; fi
  done
  wait || true
  cat /tmp/cli.log
  [ $ok = 1 ] && grep -qE "^ 65536 +100 " /tmp/cli.log && echo "PASS: rxe0/rxe1 active, ib_write_bw moved data"
'
