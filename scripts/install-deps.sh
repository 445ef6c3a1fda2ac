#!/usr/bin/env bash
# Installs, as root, everything the tests, benchmarks and the local cluster need, from Debian's
# packages and PyPI. Safe to run again.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root (apt-get needs it)" >&2; exit 1; }
pkgs=(docker.io binutils systemd busybox-static protobuf-compiler iproute2 iptables tmux docker-registry docker-compose haproxy curl util-linux etcd-server etcd-client openssl prometheus gnuplot-nox)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's docker.io enables a system dockerd on machines with systemd; the tests start their own.
python3 -c 'import docker' 2>/dev/null || python3 -m pip install -q docker
if [ ! -x /usr/local/bin/docker ]; then
  echo "note: /usr/local/bin/docker (CLI 28.x) is missing; tests fall back to no CLI and will fail clearly" >&2
fi
