#!/usr/bin/env bash
# Builds swarm's container image from a built binary, offline: no registry and no base image.
# The image holds the binary (stripped of debug information) and the C libraries it links,
# with the binary as its entry point, so that `docker run IMAGE manage ...` runs a manager as
# classic Swarm's image did. It is imported into the engine DOCKER_HOST names (docker import).
#   scripts/image.sh [--binary target/release/swarm] [--tag swarm:VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=target/release/swarm
tag=
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--tag NAME:TAG]" >&2; exit 2 ;;
  esac
done
for tool in docker strip ldd tar; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (packages: docker.io, binutils, libc-bin, tar)" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "$binary is missing: build it first (cargo build --release)" >&2; exit 1; }
version=$("$binary" --version | awk '{print $3}')
[ -n "$tag" ] || tag="swarm:$version"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/local/bin/swarm"
strip --strip-debug "$root/usr/local/bin/swarm"
# The shared libraries it links, at the paths the loader looks for them.
for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
mkdir -p "$root/tmp" "$root/data" "$root/etc"
chmod 1777 "$root/tmp"
echo "root:x:0:0:root:/:/usr/local/bin/swarm" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
tar --numeric-owner -C "$root" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/bin/swarm"]' \
  -c 'CMD ["--help"]' \
  -c 'EXPOSE 2375' \
  -c 'VOLUME /data' \
  -c 'WORKDIR /data' \
  -c "LABEL org.opencontainers.image.title=swarm org.opencontainers.image.version=$version" \
  - "$tag" >/dev/null
echo "$tag"
