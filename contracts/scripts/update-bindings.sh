#!/usr/bin/env bash
# Rebuilds the contracts and refreshes the artifacts committed under bindings/artifacts/.
# Run from anywhere; needs `npm ci` in contracts/ first. Commit the changed JSON files afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if [ ! -x node_modules/.bin/forge ]; then
  echo "contracts/node_modules is missing: run 'npm ci' in contracts/ first" >&2
  exit 1
fi
node_modules/.bin/forge build
node scripts/extract-artifacts.cjs out ../bindings/artifacts
