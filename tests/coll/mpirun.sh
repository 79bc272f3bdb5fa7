#!/usr/bin/env bash
# braid_coll_perf launched by Open MPI's mpirun (Debian's openmpi-bin), 3 ranks on one
# host: the ranks come from OMPI_COMM_WORLD_* and meet through the job-private file store
# braid derives from the mpirun job; every collective is checked.
#
#   tests/coll/mpirun.sh PERF_DIR
set -uo pipefail
perf="${1:?usage: mpirun.sh PERF_DIR}"
command -v mpirun >/dev/null || { echo "FAIL: mpirun is not installed (.ci/install-deps.sh installs openmpi-bin)"; exit 1; }
export BRAID_SOCKET_IFNAME="${BRAID_SOCKET_IFNAME:-lo}"
# Open MPI's own TCP wiring stays on loopback too (the ranks only use it to start).
mpi=(mpirun --allow-run-as-root --oversubscribe -n 3 --mca btl self,tcp --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo -x BRAID_SOCKET_IFNAME -x BRAID_LOG_LEVEL)
failures=0
for coll in all_reduce all_gather reduce_scatter broadcast reduce alltoall sendrecv; do
  out=$(timeout 120 "${mpi[@]}" "$perf/braid_coll_perf" "$coll" -b 8 -e 1M -f 16 -c 1 -n 2 -w 1 2>&1)
  rc=$?
  if [[ $rc -ne 0 ]] || ! grep -q '^# Out of bounds values : 0 OK' <<<"$out"; then
    echo "FAIL: $coll under mpirun (rc $rc):"; echo "$out" | tail -20; failures=$((failures + 1)); continue
  fi
  ranks=$(grep -cE '^#  Rank +[0-9]+ Group +0 Pid +[0-9]+ on ' <<<"$out")
  if [[ $ranks -ne 3 ]]; then echo "FAIL: $coll: $ranks rank lines, not 3"; failures=$((failures + 1)); fi
  echo "ok: $coll under mpirun, 3 ranks, checked"
done
[[ $failures -eq 0 ]] || { echo "$failures failures"; exit 1; }
echo "mpirun: all collectives passed"
