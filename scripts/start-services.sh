#!/usr/bin/env bash
# Installs and starts what Kiln's tests need on a Debian bookworm machine (run as root):
# a Docker Engine (Debian's docker.io), the distribution registry binary (docker-registry, started by
# the test suites themselves on loopback ports), busybox-static (to make base images with no internet),
# skopeo (benchmark baseline), htpasswd and redis-server (started by @kiln/redis's tests on loopback ports;
# the system service is not used), qemu-user-static + binfmt-support (arm64 RUN steps under emulation),
# python3-pip (the oci builder resolves withPipPackages wheels on the build host).
# Idempotent: safe to run on a machine that has it all.
set -euo pipefail

need=()
for pkg in docker.io docker-registry busybox-static skopeo apache2-utils debootstrap openssl iptables git ca-certificates redis-server qemu-user-static binfmt-support python3-pip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "services: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# linux/arm64 RUN steps under emulation (multi-platform BuildKit tests): binfmt_misc mounted and
# qemu-aarch64 enabled (Debian registers it with the F flag, so containers use it too).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
fi
if ! head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null | grep -qx enabled; then
  update-binfmts --enable qemu-aarch64
fi
echo "services: arm64 emulation $(head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64)"

if ! docker version >/dev/null 2>&1; then
  echo "services: starting dockerd"
  mkdir -p /var/log
  # Debian's docker.io ships containerd as a separate binary; dockerd starts it itself.
  nohup dockerd --host=unix:///var/run/docker.sock >/var/log/kiln-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker version >/dev/null 2>&1; then
    echo "services: dockerd did not start; its log:" >&2
    tail -50 /var/log/kiln-dockerd.log >&2
    exit 1
  fi
fi
echo "services: docker $(docker version --format '{{.Server.Version}}') ready"
