#!/usr/bin/env bash
# `make image-test`: build the image, then use it as a user would, as its non-root user:
# `dam demo` in a container (the data directory a volume), `dam serve` in another, checked
# over HTTP (/health, a search that finds the demo's cat); the user is not root and can
# write nowhere but /data and /tmp. Prints the figures and writes them to
# build/container/image-test.json. Exits non-zero, saying why, if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-dam_pipeline:latest}
WORK=${WORK:-build/container}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/container/containers.conf}
mkdir -p "$WORK"

if docker info >/dev/null 2>&1; then
  ENGINE=(docker)
  RUN=(docker run --rm)
elif command -v podman >/dev/null 2>&1; then
  ENGINE=(podman --storage-driver vfs)
  # runc and the host network: what works where crun and port publishing do not
  # (and no health-check timer: podman schedules those through systemd, absent here)
  RUN=(podman --storage-driver vfs run --rm --runtime runc --network host --no-healthcheck)
else
  echo "make image-test: no container engine (Docker, or podman + runc) here" >&2
  exit 2
fi

started=$(date +%s)
if [ -z "${SKIP_BUILD:-}" ]; then
  ./container/build.sh
fi
built=$(date +%s)

data=$(mktemp -d "$PWD/$WORK/data.XXXX")
chmod 777 "$data"  # the image's user (uid 1000) writes it
trap 'rm -rf "$data"; [ -n "${server:-}" ] && "${ENGINE[@]}" rm -f "$server" >/dev/null 2>&1 || true' EXIT

echo "== whoami in the image"
uid=$("${RUN[@]}" --entrypoint id "$IMAGE" -u)
[ "$uid" != 0 ] || { echo "the image runs as root" >&2; exit 1; }

echo "== what its user can write (nothing but /data and /tmp)"
writable=$("${RUN[@]}" --entrypoint sh "$IMAGE" -c \
  'find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /data -o -path /tmp -o -path /var/tmp \) -prune -o ! -type l -writable -print 2>/dev/null | head -20')
if [ -n "$writable" ]; then
  echo "writable by the image's user:" >&2
  echo "$writable" >&2
  exit 1
fi

echo "== dam demo in a container"
demo_started=$(date +%s)
"${RUN[@]}" -v "$data:/data" "$IMAGE" demo | tee "$WORK/demo.log"
demo_seconds=$(( $(date +%s) - demo_started ))
grep -q "chelsea the cat" "$WORK/demo.log" || { echo "the demo's answer names no cat" >&2; exit 1; }

echo "== dam serve in a container"
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
token=image-test-token
server=dam-image-test-$$
"${RUN[@]}" -d --name "$server" -v "$data:/data" -e DAM_SERVE_PORT="$port" \
  -e DAM_API_TOKEN="$token" "$IMAGE" serve >/dev/null
python3 - "$port" "$token" <<'PY'
import json, sys, time, urllib.request

port, token = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 180
while True:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as reply:
            assert reply.status == 200
            break
    except OSError:
        if time.time() > deadline:
            sys.exit("dam serve in the container did not answer /health in 180 s")
        time.sleep(1)
request = urllib.request.Request(
    f"{base}/api/search?q=a+cat&top_k=3", headers={"Authorization": f"Bearer {token}"}
)
with urllib.request.urlopen(request, timeout=60) as reply:
    hits = json.load(reply)["hits"]
keys = [hit["key"] for hit in hits]
print("search 'a cat' ->", keys)
assert keys and "chelsea" in keys[0], keys
try:
    urllib.request.urlopen(f"{base}/api/search?q=a+cat", timeout=30)
    sys.exit("the search answered without the token")
except urllib.error.HTTPError as refused:
    assert refused.code == 401, refused.code
PY
"${ENGINE[@]}" rm -f "$server" >/dev/null
server=""

size=$("${ENGINE[@]}" image inspect --format '{{.Size}}' "$IMAGE")
cat >"$WORK/image-test.json" <<JSON
{"image": "$IMAGE", "build_seconds": $((built - started)), "image_mb": $((size / 1048576)),
 "demo_seconds": $demo_seconds, "uid": $uid}
JSON
echo "== image-test passed: $(cat "$WORK/image-test.json")"
