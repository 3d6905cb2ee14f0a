#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/browser, driven by Playwright for
# Python with executable_path=/usr/bin/chromium). Idempotent: does nothing when it is there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
