#!/usr/bin/env bash
# Offline validation of deploy/docker and deploy/k8s (ctest deploy_validate, label integration).
# Installs tests/deploy/package-lock.json with `npm ci` into a scratch folder (never into the source
# tree), then runs validate.js. Needs node and npm (Debian's npm package is enough) and the npm
# registry or npm's cache (--prefer-offline). Exit 77 (skipped) only when there is no node or npm.
#   HPO_DEPLOY_WORK_DIR  where to install and write rendered.yaml (default: a temporary folder, removed)
#   HPO_BUILD_DIR        a build tree whose binaries' libraries are checked against the runtime stages
#                        (default: ./build of the repository; skipped when not built)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "deploy validate: SKIPPED: node and npm are needed (apt-get install npm)"
  exit 77
fi
if [ -n "${HPO_DEPLOY_WORK_DIR:-}" ]; then
  WORK=$HPO_DEPLOY_WORK_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/hpo-deploy-validate.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/npm"
cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/npm/"
echo "deploy validate: npm ci into $WORK/npm (node $(node --version), npm $(npm --version))"
(cd "$WORK/npm" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts --loglevel=error)
node "$HERE/validate.js" "$ROOT" "$WORK/npm/node_modules" "$WORK"
