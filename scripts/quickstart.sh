#!/usr/bin/env bash
# The README's first quick-start command. On a fresh Debian bookworm machine, as root, with no access
# to Docker Hub or PyPI: install pnpm if missing, install and start Docker Engine and the other
# services, install and build the workspace, then run the hello-python example end to end — it makes
# its base image, registry and package index locally, builds and pushes the image, and runs it.
# Idempotent: a second run reuses the base image (the registry is started per run, so it builds again).
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

step() { printf '\n==> %s\n' "$*"; }

if ! command -v node >/dev/null 2>&1; then
  echo "quickstart: Node.js 20 (>= 20.11) is required: apt-get install nodejs, or see https://nodejs.org" >&2
  exit 1
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=11)?0:1)' || {
  echo "quickstart: Node.js >= 20.11 is required (found $(node --version))" >&2
  exit 1
}

if [ "$(pnpm --version 2>/dev/null || true)" != "10.34.9" ]; then
  step "installing pnpm 10.34.9"
  npm install -g pnpm@10.34.9 >/dev/null
fi

step "installing and starting services (Docker Engine, registry binary, busybox, debootstrap)"
bash scripts/start-services.sh

step "installing dependencies"
pnpm install --frozen-lockfile

step "building the packages"
pnpm build

step "running examples/hello-python offline (the base image takes a few minutes the first time)"
pnpm --filter kiln-example-hello-python run offline

printf '\nDone. Next: `pnpm test` runs the whole test suite.\n'
