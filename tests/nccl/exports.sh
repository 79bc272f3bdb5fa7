#!/bin/sh
# The plugin's dynamic symbol table: exactly the four NCCL tables, and no libnccl, libcuda
# or libcudart among its needs (NCCL hands the plugin its logger; CUDA is dlopen()ed).
set -eu
so=$1
got=$(nm -D --defined-only "$so" | awk '{print $3}' | sort | tr '\n' ' ')
want="ncclNetPlugin_v10 ncclNetPlugin_v11 ncclNetPlugin_v8 ncclNetPlugin_v9 "
if [ "$got" != "$want" ]; then
  echo "FAIL: $so exports [$got], expected [$want]"
  exit 1
fi
needed=$(readelf -d "$so" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')
case "$needed" in
  *libnccl*|*libcuda*|*libcudart*) echo "FAIL: $so needs [$needed]"; exit 1 ;;
esac
echo "exports: $got"
echo "needs: $needed"
