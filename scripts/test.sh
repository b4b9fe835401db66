#!/usr/bin/env bash
# Runs every test of p2p-energy on a fresh Debian machine, installing what the tests need:
# npm packages (forge, cast, anvil, solc, ethers, viem) from the lockfiles, and web3.py and
# pytest (tests/compat/requirements.txt) into the virtualenv .tools/venv, the dApp's packages (web/)
# and Debian's chromium for its browser tests. Needs the Rust
# toolchain, Node.js/npm and Python 3 with venv, which a Debian Rust machine has.
#
#   ./scripts/test.sh            # everything
#   SKIP_LINT=1 ./scripts/test.sh   # skip fmt/clippy
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# CI builds once from a clean clone: incremental caches would only cost disk (~13 GB of them
# next to a full-debug build once filled CI's disk; Cargo.toml's [profile.dev] keeps the rest small).
export CARGO_INCREMENTAL=0
echo "==> disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2 " on " $6}')"

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

venv="$root/.tools/venv"
install_python() {
  if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$venv" && python3 -m venv "$venv" || return 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/compat/requirements.txt" &&
    "$venv/bin/pytest" --version
}

# Mosquitto for the MQTT bridge's end-to-end tests (they start their own broker on free ports),
# openssl for their certificates, systemd's `systemd-analyze verify` for the deploy/ units, and
# Prometheus, which a test runs to scrape a testnet and the bridge.
install_mosquitto() {
  local missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"
}

# The trading dApp's npm packages (web/) and Debian's Chromium for its browser tests
# (playwright-core drives /usr/bin/chromium; no browser is downloaded).
install_web() {
  (cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  if ! command -v chromium >/dev/null 2>&1; then
    apt-get update && apt-get install -y chromium || return 1
  fi
  chromium --version 2>/dev/null
}

# Installation failures stop the run: nothing after them could pass.
echo "==> install npm packages"
if ! install_npm; then
  echo "installing npm packages failed"
  echo "steps: 0 passed, 1 failed"
  exit 1
fi
echo "==> install Python packages (.tools/venv)"
if ! install_python; then
  echo "installing Python packages failed"
  echo "steps: 0 passed, 1 failed"
  exit 1
fi

echo "==> install mosquitto, openssl, systemd-analyze, prometheus"
if ! install_mosquitto; then
  echo "installing mosquitto failed"
  echo "steps: 0 passed, 1 failed"
  exit 1
fi

echo "==> install web packages and Chromium"
if ! install_web; then
  echo "installing the web packages or Chromium failed"
  echo "steps: 0 passed, 1 failed"
  exit 1
fi

# The tests' temporary files go under one directory of this run, removed at the end: CI's disk is
# shared, and a process killed by a test cannot remove its own (what is left is reported first).
run_tmp=$(mktemp -d -t p2pe-test-run-XXXXXX)
trap 'rm -rf "$run_tmp"' EXIT
export TMPDIR=$run_tmp

step "build" cargo build --workspace --all-targets
if [ "${SKIP_LINT:-0}" != 1 ]; then
  step "rustfmt" cargo fmt --all -- --check
  step "clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
# forge-test.sh also fails when forge exits 0 without running the tests (see the script).
step "contracts: forge test" "$root/contracts/scripts/forge-test.sh"
# The lanes runner's own tests (its timeout stops a hanging job with its children; its scheduler
# keeps the alone jobs alone): a few seconds, before it runs everything else.
step "test runner: its own tests (unittest)" python3 -m unittest discover -s "$root/scripts" -p 'test_*.py'
# Every test binary `cargo test --workspace` runs, three at a time (most wait on blocks and slots far
# more than they compute; one after another they took about 24 minutes), each with two test threads;
# the script says how it picks and orders them.
step "cargo test (unit and end-to-end)" python3 "$root/scripts/cargo_test_lanes.py" --lanes 3 --job-timeout 1200 -- --test-threads 2
step "JavaScript clients (node --test)" bash -c "cd '$root/tests' && node --test compat/"
# pytest exits 5 when it collected no test: that fails the step like any other failure.
step "web3.py client (pytest)" "$venv/bin/pytest" -q "$root/tests/compat/test_web3.py"
step "web: type check and unit tests (tsc, vitest)" bash -c "cd '$root/web' && npm run --silent typecheck && npx vitest run"
# Two browser test files at a time: they wait on 10-second slots far more than they compute (344 s
# one after another, about 190 s two at a time); each starts its own dev node on a free port.
step "web: dApp in Chromium against a dev node (playwright-core)" bash -c "cd '$root/web' && node --test --test-concurrency=2 tests/browser/"

echo
echo "left in the run's TMPDIR (removed now): $(du -sh "$run_tmp" | cut -f1) in $(find "$run_tmp" -mindepth 1 -maxdepth 1 | wc -l) entries"
find "$run_tmp" -mindepth 1 -maxdepth 1 -printf '  %f\n' | sed 's/[-_.][A-Za-z0-9]*$//' | sort | uniq -c | sort -rn | head -10
echo "disk: $(df -h . | awk 'NR==2 {print $4 " free"}'), target/: $(du -sh target 2>/dev/null | cut -f1)"
if [ "$failed" -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
