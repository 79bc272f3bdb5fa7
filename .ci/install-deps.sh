#!/usr/bin/env bash
# Installs what braid needs to build, test and benchmark, on Debian 12, with apt-get.
# Idempotent: only missing packages are installed. Run as root (or with sudo).
set -euo pipefail
pkgs=(
  cmake ninja-build g++ pkg-config clang libclang-rt-dev
  libibverbs-dev librdmacm-dev libhwloc-dev libspdlog-dev libfmt-dev catch2
  libcli11-dev nlohmann-json3-dev
  iperf3 iproute2 procps
  openmpi-bin
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
else
  echo "install-deps: everything is installed"
fi

# Soft-RoCE VM for the verbs tests: qemu, busybox, rdma-core, perftest, a Debian kernel
# unpacked into a cache (not installed as the host's kernel).
bash "$(dirname "$0")/../tests/softroce/setup.sh"
