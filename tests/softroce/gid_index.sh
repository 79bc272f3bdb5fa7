#!/bin/sh
# Prints the index of the RoCE v2 IPv4-mapped GID of DEVICE port 1 (what braid's automatic
# choice picks), for tools that need -x: `gid_index.sh rxe0`. Exit 1 when there is none.
dev=${1:?usage: gid_index.sh DEVICE}
for f in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
  i=${f##*/}
  read -r g <"$f" 2>/dev/null || continue
  case "$g" in 0000:0000:0000:0000:0000:ffff:*) ;; *) continue ;; esac
  read -r t </sys/class/infiniband/"$dev"/ports/1/gid_attrs/types/"$i" 2>/dev/null || continue
  [ "$t" = "RoCE v2" ] && { echo "$i"; exit 0; }
done
exit 1
