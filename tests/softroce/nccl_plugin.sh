#!/usr/bin/env bash
# The NCCL plugin over verbs on real rxe devices, inside one Soft-RoCE VM: the harness
# (tests/nccl/plugin_harness.cc) drives two processes through the v11 table on rxe0 and
# through the v8 table on rxe1, then over a device fused by makeVDevice and over
# BRAID_NCCL_MERGE_ALL=1 (both striped over rxe0 and rxe1), then two communicators and two
# copies of the library in one process. Last, the GPU path: a stand-in libcuda.so.1 (one
# sm_80 GPU, no dma-buf) and a peer memory module's sysfs file (a tmpfs over /sys/kernel/mm,
# in the throwaway VM) make the plugin advertise NCCL_PTR_CUDA; buffers registered as CUDA
# move intact and every receive is flushed by an RDMA READ. The plugin's own log lines
# (NCCL_DEBUG=INFO) must show the devices, the GPU path and every connection on RDMA verbs.
# usage: nccl_plugin.sh HARNESS PLUGIN          (exit 77: the VM could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
h=$1 p=$2
fake=$(dirname "$h")/fakecuda  # a stand-in libcuda.so.1 (tests/nccl/fake_libcuda.c)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
"$here/run_in_vm.sh" --timeout 500 --log "$log" -- sh -c "
  export NCCL_DEBUG=INFO BRAID_TRANSPORT=verbs BRAID_SOCKET_IFNAME='=eth0'
  '$h' pair --plugin '$p' --dev 0 --expect-flush && echo 'vm: v11 rxe0 passed' &&
  '$h' pair --plugin '$p' --version 8 --dev 1 --max-size 16777216 && echo 'vm: v8 rxe1 passed' &&
  '$h' pair --plugin '$p' --fuse --max-size 16777216 && echo 'vm: fused passed' &&
  BRAID_NCCL_MERGE_ALL=1 '$h' pair --plugin '$p' --max-size 16777216 && echo 'vm: merge-all passed' &&
  '$h' local --plugin '$p' && echo 'vm: local passed' &&
  mount -t tmpfs braid-fake-peermem /sys/kernel/mm && mkdir -p /sys/kernel/mm/memory_peers/nv_mem &&
  echo 1.0 > /sys/kernel/mm/memory_peers/nv_mem/version &&
  LD_LIBRARY_PATH='$fake' '$h' pair --plugin '$p' --dev 0 --gpu --expect-flush --max-size 16777216 &&
  echo 'vm: gpu peer memory passed' &&
  LD_LIBRARY_PATH='$fake' '$h' pair --plugin '$p' --fuse --max-size 65536 && echo 'vm: gpu fused passed'"
rc=$?
set -e
[ $rc -ne 77 ] || exit 77
grep -m 40 -E "FAIL|passed|device [0-9]|virtual device" "$log" || true  # -m: a head that closes the pipe would fail the script under pipefail
[ $rc -eq 0 ] || { echo "FAIL: the harness exited with $rc"; tail -40 "$log"; exit 1; }
for want in "vm: v11 rxe0 passed" "vm: v8 rxe1 passed" "vm: fused passed" "vm: merge-all passed" "vm: local passed" \
            "vm: gpu peer memory passed" "vm: gpu fused passed" \
            "virtual device 2 rxe0\+rxe1 over devices 0 and 1, 5000 Mbit/s, ptrSupport 0x1" \
            "a fused device's GPU buffers go through host memory" \
            "NET/braid: GPU: CUDA driver 12.4, 1 GPU\(s\) \(oldest sm_8x\).*peer memory module loaded; verbs dma-buf: .*GPU buffers move by GPUDirect RDMA \(peer memory\)" \
            "on device 0 \(rxe0\): RDMA verbs over 1 rail.*GPU path GPUDirect RDMA \(peer memory\)" \
            "NET/braid: device 0 rxe0: RDMA verbs over rxe0:1" "NET/braid: device 1 rxe1: RDMA verbs over rxe1:1" \
            "send comm to .* on device 0 \(rxe0\): RDMA verbs over 1 rail" \
            "receive comm from .* on device 1 \(rxe1\): RDMA verbs over 1 rail" \
            "virtual device 2 rxe0\+rxe1: braid stripes over" \
            "device 0 \(rxe0\): flush path up \(RDMA verbs" \
            "send comm to .* on device 2 \(rxe0\+rxe1\): RDMA verbs over 2 rail" \
            "device 0 rxe0:1\+rxe1:1: RDMA verbs .*BRAID_NCCL_MERGE_ALL=1" \
            "receive comm from .* on device 0 \(rxe0:1\+rxe1:1\): RDMA verbs over 2 rail"; do
  grep -q -E "$want" "$log" || { echo "FAIL: the log lacks '$want'"; grep -E "NET/braid" "$log" | head -30; exit 1; }
done
if grep -q -E "TCP over" "$log"; then echo "FAIL: a connection went over TCP"; grep "TCP over" "$log"; exit 1; fi
grep -m1 -E "NET/braid: GPU: CUDA driver" "$log" | sed 's/^/gpu: /'
echo "PASS: the plugin moved every size intact over rxe0, rxe1, a fused device and BRAID_NCCL_MERGE_ALL, v11 and v8, and GPU-registered buffers (a stand-in driver, a peer memory module) with flushes"
