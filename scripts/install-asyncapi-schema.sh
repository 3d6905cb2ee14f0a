#!/usr/bin/env bash
# Installs AsyncAPI's own JSON Schema (npm package @asyncapi/specs, Apache-2.0) under
# node_modules/, for tests/http/test_documents.py, which validates /asyncapi.json against it.
# Idempotent: does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=6.11.1
SCHEMA='node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json'
if [ -f "$SCHEMA" ]; then
  echo "asyncapi schema: $SCHEMA"
  exit 0
fi
npm install --no-save --no-package-lock --no-audit --no-fund --silent --prefix . "@asyncapi/specs@$VERSION"
echo "asyncapi schema: $SCHEMA"
