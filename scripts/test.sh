#!/usr/bin/env bash
# Runs every test of p2p-energy on a fresh Debian machine, installing what the tests need:
# npm packages (forge, cast, anvil, solc, ethers, viem) from the lockfiles. Needs the Rust
# toolchain and Node.js/npm, which a Debian Rust machine has.
#
#   ./scripts/test.sh            # everything
#   SKIP_LINT=1 ./scripts/test.sh   # skip fmt/clippy
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo
  echo "==> $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "<== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "<== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

install_npm() {
  (cd "$root/contracts" && npm ci --no-audit --no-fund --loglevel=error) &&
    (cd "$root/tests" && npm ci --no-audit --no-fund --loglevel=error) &&
    "$root/contracts/node_modules/.bin/forge" --version &&
    "$root/tests/node_modules/.bin/cast" --version
}

# Installation failures stop the run: nothing after them could pass.
echo "==> install npm packages"
if ! install_npm; then
  echo "installing npm packages failed"
  echo "steps: 0 passed, 1 failed"
  exit 1
fi

step "build" cargo build --workspace --all-targets
if [ "${SKIP_LINT:-0}" != 1 ]; then
  step "rustfmt" cargo fmt --all -- --check
  step "clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
step "contracts: forge test" bash -c "cd '$root/contracts' && ./node_modules/.bin/forge test"
step "cargo test (unit and end-to-end)" cargo test --workspace -- --test-threads 2
step "JavaScript clients (node --test)" bash -c "cd '$root/tests' && node --test compat/"

echo
if [ "$failed" -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
