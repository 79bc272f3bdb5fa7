#!/usr/bin/env bash
# The Soft-RoCE harness works from trees under /tmp, which the VM hides under a fresh tmpfs:
# a copy of tests/softroce under /tmp runs the VM from outside both trees (cwd /), its
# scripts call each other (gid_index.sh by the harness's own path), a binary in a second
# tree under /tmp (given as an argument) runs, and what it writes there lands on the host.
#
#   tests/softroce/tmp_tree.sh BRAID_INFO      (on the host; 77 = no VM)
set -uo pipefail
info="${1:?usage: tmp_tree.sh BRAID_INFO}"
here=$(cd "$(dirname "$0")" && pwd)
tree=$(mktemp -d /tmp/braid-tmptree.XXXXXX)
build=$(mktemp -d /tmp/braid-tmpbuild.XXXXXX)
trap 'rm -rf "$tree" "$build"' EXIT
mkdir -p "$tree/tests/softroce"
cp "$here"/*.sh "$tree/tests/softroce/"
cp "$info" "$build/braid_info"

cd /
# Inside: the copied gid_index.sh (found only if the copy's tree is shared), the copied
# braid_info (only if the second tree is), and a file written back into that tree.
"$tree/tests/softroce/run_in_vm.sh" --timeout 300 -- sh -c '
  x=$("$1/gid_index.sh" rxe0) || { echo "FAIL: $1/gid_index.sh rxe0"; exit 1; }
  "$2" --params >/dev/null || { echo "FAIL: $2 --params"; exit 1; }
  echo "$x" >"$3/gid_index"
  echo "in the VM: gid_index.sh and braid_info ran from trees under /tmp (GID index $x)"
' sh "$tree/tests/softroce" "$build/braid_info" "$build"
rc=$?
[[ $rc == 0 ]] || exit "$rc"  # 77: the VM could not start (skipped, never passed)
[[ -s "$build/gid_index" ]] || { echo "FAIL: the file written in the VM is not in $build"; exit 1; }
echo "PASS: a checkout and a build tree under /tmp are shared with the VM at their paths"
