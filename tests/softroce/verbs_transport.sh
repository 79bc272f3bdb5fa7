#!/usr/bin/env bash
# The verbs transport test binary, run inside one Soft-RoCE VM (rxe0 + rxe1).
# usage: verbs_transport.sh TEST_BINARY [CATCH_ARGS...]   (exit 77: the VM could not start)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1; shift
exec "$here/run_in_vm.sh" --timeout 600 -- "$bin" "$@"
