#!/usr/bin/env bash
# `make image`: build the dam_pipeline image from the Dockerfile.
#
# With a Docker engine: `docker build`, as users do. Without one: buildah (no daemon),
# `--isolation chroot`. The base is BASE if it can be pulled; on a machine that reaches no
# image registry, a Debian bookworm made here with debootstrap (Debian's packages are
# reachable) and imported as localhost/debian:bookworm. When the CPU build of torch is on
# this disk (pip's find-links) it goes into the build context, so the build needs no
# torch index.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-dam_pipeline:latest}
BASE=${BASE:-python:3.11-slim-bookworm}
LOCAL_BASE=localhost/debian:bookworm
WORK=${WORK:-build/container}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/container/containers.conf}
PODMAN=(podman --storage-driver vfs)
BUILDAH=(buildah --storage-driver vfs)

mkdir -p wheels "$WORK"
torch_index=https://download.pytorch.org/whl/cpu
for folder in ${PIP_FIND_LINKS:-} /opt/wheels; do
  for wheel in "$folder"/torch-2.13.0+cpu-*.whl; do
    if [ -f "$wheel" ]; then
      cp -u "$wheel" wheels/
      torch_index=""  # the wheel is in the context: no torch index needed
    fi
  done
done

if docker info >/dev/null 2>&1; then
  echo "Building $IMAGE with docker (base $BASE)"
  exec docker build -t "$IMAGE" --build-arg BASE="$BASE" --build-arg TORCH_INDEX="$torch_index" .
fi
if ! command -v buildah >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
  echo "make image: neither a Docker engine nor buildah + podman is available here;" \
    "install Docker, or (Debian) apt-get install buildah podman runc debootstrap" >&2
  exit 2
fi

if ! timeout 60 "${BUILDAH[@]}" pull -q "$BASE" >/dev/null 2>&1; then
  if ! "${PODMAN[@]}" image exists "$LOCAL_BASE"; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      echo "make image: $BASE cannot be pulled and debootstrap is missing to make a local" \
        "base (apt-get install debootstrap)" >&2
      exit 2
    fi
    echo "$BASE cannot be pulled here: making $LOCAL_BASE with debootstrap (a few minutes)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" >"$WORK/debootstrap.log"
    tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$LOCAL_BASE" >/dev/null
    rm -rf "$WORK/rootfs"
  fi
  BASE=$LOCAL_BASE
fi

# this host's CA bundle, for pip behind a proxy that inspects TLS (as here)
trust=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  trust=(--volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.pem:ro
    --build-arg PIP_CERT=/run/host-ca.pem)
fi
echo "Building $IMAGE with buildah (base $BASE)"
"${BUILDAH[@]}" bud --isolation chroot --format docker -t "$IMAGE" "${trust[@]}" \
  --build-arg BASE="$BASE" --build-arg TORCH_INDEX="$torch_index" .
