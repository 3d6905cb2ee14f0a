#!/usr/bin/env bash
# Installs the TypeScript compiler (npm package typescript, Apache-2.0) at a pinned version into
# a cache directory outside the work tree, for tests/ts/test_types.py, which compiles
# tests/ts/example.ts against static/realtime.d.ts with `tsc --noEmit --strict`.
# Idempotent: does nothing when that version is there.
set -euo pipefail

VERSION=5.9.3
DIR="${REALTIME_TOOLS_DIR:-$HOME/.cache/realtime-test-tools}/typescript-$VERSION"
TSC="$DIR/node_modules/typescript/bin/tsc"
if [ -f "$TSC" ]; then
  echo "typescript: $TSC ($(node "$TSC" --version))"
  exit 0
fi
mkdir -p "$DIR"
npm install --no-save --no-package-lock --no-audit --no-fund --silent --prefix "$DIR" "typescript@$VERSION"
echo "typescript: $TSC ($(node "$TSC" --version))"
