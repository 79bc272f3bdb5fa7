#!/usr/bin/env bash
# braid_info on this host: exit 0 and a clear RDMA line (devices, or why there are none),
# the TCP rails, --params and --json; a bad flag is a usage error (exit 2), a bad knob 1.
set -uo pipefail
info=$1
out=$(env -u BRAID_IB_HCA "$info" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || { echo "FAIL: braid_info exited $rc"; exit 1; }
grep -qE "^RDMA devices" <<<"$out" || { echo "FAIL: no RDMA section"; exit 1; }
grep -qE "port [0-9]+: |libibverbs not found|no RDMA devices|built without verbs" <<<"$out" ||
  { echo "FAIL: the RDMA section says neither ports nor why there are none"; exit 1; }
grep -q "^TCP rails" <<<"$out" || { echo "FAIL: no TCP rails section"; exit 1; }
json=$(mktemp); trap 'rm -f "$json"' EXIT
# Capture first: grep -q in a pipeline closes it early, braid_info then dies of SIGPIPE and
# pipefail reports that as a failure (seen in CI).
params=$("$info" --params --json "$json" 2>&1); rc=$?
[ $rc = 0 ] || { echo "FAIL: --params exited $rc"; exit 1; }
grep -q "BRAID_IB_GID_INDEX" <<<"$params" || { echo "FAIL: --params lacks BRAID_IB_GID_INDEX"; exit 1; }
for key in '"rdma"' '"tcp"' '"params"' '"BRAID_IB_HCA"'; do
  grep -q "$key" "$json" || { echo "FAIL: --json lacks $key"; exit 1; }
done
"$info" --no-such-flag >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || { echo "FAIL: a bad flag exited $rc, not 2"; exit 1; }
BRAID_IB_HCA=mlx5_0:x "$info" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || { echo "FAIL: a bad BRAID_IB_HCA exited $rc, not 1"; exit 1; }
BRAID_IB_GID_INDEX=abc "$info" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || { echo "FAIL: a bad BRAID_IB_GID_INDEX exited $rc, not 1"; exit 1; }
echo "PASS"
