#!/usr/bin/env bash
# Validates fetchpar's --har output with npm's har-validator (a third-party HAR 1.2 schema
# validator), installed into a temporary directory from the npm registry. Needs node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "tests/har.sh: skipped: node and npm are needed (apt-get install -y nodejs npm)" >&2
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm install --silent --no-audit --no-fund --prefix "$tmp" har-validator@5.1.5 >/dev/null
FETCHPAR_HAR_VALIDATOR="$tmp/node_modules/har-validator" \
    cargo test --locked --test it har:: -- --nocapture
