#!/usr/bin/env bash
# The collectives across two hosts (two Soft-RoCE VMs) over real verbs on rxe0 and rxe1:
# 4 ranks, ranks 0 and 1 in VM1, ranks 2 and 3 in VM2. braidrun is single-host, so each VM
# starts its two ranks itself with BRAID_RANK, BRAID_WORLD_SIZE, BRAID_LOCAL_RANK and
# BRAID_STORE (a TCP store that rank 0 serves on VM1's 10.77.0.1, a fresh port per run).
# braid_coll_perf all_reduce, all_gather, alltoall, reduce_scatter, broadcast, reduce and
# sendrecv from 16 B to 4 MiB, checked (-c 1), about 10 s each under emulation:
# every process must exit 0, rank 0's table must say "Out of bounds values : 0 OK", and its
# rank lines must show 2 ranks on each of two hosts, every one on "transport verbs" with
# rails on rxe0 and rxe1 (BRAID_TRANSPORT=verbs fails rather than fall back to TCP).
# usage: two_hosts_coll.sh PERF_DIR           (exit 77: the VMs could not start)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
colls="all_reduce all_gather alltoall reduce_scatter broadcast reduce sendrecv"

if [ "${1:-}" = --in-vm ]; then
  perf=$2 port=$3
  # A leading '=' makes the whole list exact names ('=rxe0,=rxe1' would select rxe0 only).
  export BRAID_TRANSPORT=verbs BRAID_IB_HCA='=rxe0,rxe1' BRAID_SOCKET_IFNAME='=eth0'
  export BRAID_LOG_LEVEL=${BRAID_LOG_LEVEL:-error}
  vm=$BRAID_VM_INDEX
  if [ "$vm" = 1 ]; then storeip=$BRAID_VM_IP0; else storeip=$BRAID_VM_PEER_IP0; fi
  first=$(((vm - 1) * 2))  # this VM's ranks: first, first+1
  out=$(mktemp -d)
  failures=0
  fail() { echo "FAIL: vm$vm: $*"; failures=$((failures + 1)); }
  k=0
  for c in $colls; do
    store=$storeip:$((port + k))
    k=$((k + 1))
    t0=$SECONDS
    pids=()
    for l in 0 1; do
      r=$((first + l))
      BRAID_RANK=$r BRAID_WORLD_SIZE=4 BRAID_LOCAL_RANK=$l BRAID_STORE=$store \
        timeout -k 5 150 "$perf/braid_coll_perf" "$c" -b 16 -e 4M -f 8 -c 1 -n 2 -w 1 \
        >"$out/$c.$r" 2>"$out/$c.$r.err" &
      pids+=($!)
    done
    bad=0
    for l in 0 1; do
      r=$((first + l))
      wait "${pids[$l]}"
      rc=$?
      if [ $rc -ne 0 ]; then
        fail "$c: rank $r (store $store) exited with $rc"; tail -15 "$out/$c.$r.err" "$out/$c.$r"; bad=1
      fi
    done
    dt=$((SECONDS - t0))
    [ $bad = 0 ] || continue
    if [ "$vm" = 1 ]; then
      f=$out/$c.0
      if ! grep -qx '# Out of bounds values : 0 OK' "$f"; then
        fail "$c: $(grep 'Out of bounds' "$f" || echo 'no Out of bounds line')"; cat "$f"; continue
      fi
      lines=$(grep -E '^#  Rank +[0-9]+ Group' "$f")
      verbs=$(grep -cE '^#  Rank +[0-9]+ Group +0 Pid +[0-9]+ on +[^ ]+ transport verbs rails [^ ]*rxe0[^ ]*,[^ ]*rxe1[^ ]*$' <<<"$lines")
      hosts=$(awk '{print $9}' <<<"$lines" | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')
      if [ "$(wc -l <<<"$lines")" != 4 ] || [ "$verbs" != 4 ] || [ "$hosts" != "2 2 " ]; then
        fail "$c: rank lines: $verbs of 4 on verbs over rxe0 and rxe1, ranks per host: $hosts(2 2 expected)"
        echo "$lines"; continue
      fi
      rows=$(grep -vc '^#' "$f")
      echo "ok: $c: 4 ranks on 2 hosts, $rows sizes checked, every rank on verbs ($(grep -m1 '^#  Rank' "$f" | sed 's/.*transport/transport/')), $dt s"
      grep '^#  Rank' "$f"
      grep -v '^#' "$f" | sed "s/^/  $c| /"
    else
      echo "ok: $c: ranks 2 and 3 exited 0, $dt s"
    fi
  done
  rm -rf "$out"
  if [ $failures -ne 0 ]; then echo "vm$vm: $failures check(s) failed"; exit 1; fi
  echo "vm$vm: every check passed"
  exit 0
fi

perf=${1:?usage: two_hosts_coll.sh PERF_DIR}
[ -x "$perf/braid_coll_perf" ] || { echo "FAIL: $perf/braid_coll_perf is not built"; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
port=$((20000 + RANDOM % 20000))
t0=$SECONDS
"$here/run_in_vm.sh" --two --timeout 540 --log "$log" -- "$here/two_hosts_coll.sh" --in-vm "$perf" "$port"
rc=$?
[ $rc -ne 77 ] || exit 77
for vm in vm1 vm2; do
  if [ $rc -ne 0 ] || ! grep -qE "^\[$vm\] $vm: every check passed" "$log"; then
    echo "FAIL: the checks in the VMs exited with $rc:"; grep -E '^\[vm[12]\] (FAIL|vm[12]:)' "$log"; exit 1
  fi
done
for c in $colls; do
  grep -qE "^\[vm1\] ok: $c: 4 ranks on 2 hosts" "$log" || { echo "FAIL: no checked $c table from rank 0"; exit 1; }
done
echo "PASS: $(wc -w <<<"$colls") collectives ($colls), 4 ranks on two hosts over verbs (rxe0+rxe1), 16 B to 4 MiB checked, $((SECONDS - t0)) s"
