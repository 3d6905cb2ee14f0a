#!/usr/bin/env bash
# Installs axe-core (the accessibility rules engine, from npm) for the browser tests, which inject
# it into the widget's pages (tests/browser/test_widget_a11y.py). Pinned; kept in a cache outside
# the work tree ($REALTIME_TOOLS_DIR, default ~/.cache/realtime-test-tools), where the tests look
# for it. Idempotent: does nothing when that version is there.
set -euo pipefail

VERSION="4.10.2"
TOOLS="${REALTIME_TOOLS_DIR:-$HOME/.cache/realtime-test-tools}"
DEST="$TOOLS/axe-core-$VERSION"
FILE="$DEST/node_modules/axe-core/axe.min.js"

if [ -f "$FILE" ]; then
  echo "axe-core: $VERSION at $FILE"
  exit 0
fi
if ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y npm
fi
mkdir -p "$DEST"
npm install --silent --no-audit --no-fund --no-save --prefix "$DEST" "axe-core@$VERSION"
test -f "$FILE"
echo "axe-core: $VERSION installed at $FILE"
