#!/usr/bin/env bash
# What the test suite needs besides the Python packages (`pip install -e '.[dev]'`): Debian's
# Chromium for the browser tests, AsyncAPI's JSON Schema for the document tests, HAProxy,
# nginx and iptables for the tests of several hosts (tests/hosts), and the TypeScript compiler
# for the client library's typings (tests/ts).
# Idempotent: each step does nothing when its tool is there.
set -euo pipefail
cd "$(dirname "$0")"
bash install-browser.sh
bash install-axe.sh  # axe-core (npm): the accessibility checks of the browser tests
bash install-asyncapi-schema.sh
bash install-hosts.sh
bash install-typescript.sh
