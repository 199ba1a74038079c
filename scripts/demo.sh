#!/bin/sh
# make demo: the main job on the embedded default (an image file).
# Creates a volume, prints its geometry, and checks it with fsck.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/bin"
DIR=$(mktemp -d /tmp/lunfs-demo.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
IMG="$DIR/lun0.img"

echo "== 1. a 4 GiB LUN as a sparse image file: $IMG"
truncate -s 4G "$IMG"
echo "== 2. mkfs.lunfs -L demo-datastore $IMG"
"$BIN/mkfs.lunfs" -L demo-datastore "$IMG"
echo "== 3. fsck.lunfs -n -v $IMG"
"$BIN/fsck.lunfs" -n -v "$IMG"
echo "== demo done (the image is removed)"
