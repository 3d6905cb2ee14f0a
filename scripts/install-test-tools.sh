#!/usr/bin/env bash
# What the test suite needs besides the Python packages (`pip install -e '.[dev]'`): Debian's
# Chromium for the browser tests, and AsyncAPI's JSON Schema for the document tests.
# Idempotent: each step does nothing when its tool is there.
set -euo pipefail
cd "$(dirname "$0")"
bash install-browser.sh
bash install-asyncapi-schema.sh
