#!/usr/bin/env bash
# Runs `forge test` and fails unless forge really ran the tests and every one passed.
#
# forge 1.7.1 exits 0 when it compiles but cannot write its artifacts (a full disk, a file
# where out/X.sol should be a folder): it prints "Error: Failed to create artifact parent
# folder ..." and runs no test at all. CI once reported that as a passing step, so the exit
# code alone is not trusted: the summary line must say how many tests passed and that none
# failed, and no line may start with "Error:".
#
#   ./scripts/forge-test.sh [forge test arguments...]
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
./node_modules/.bin/forge test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  echo "forge test exited with $rc" >&2
  exit "$rc"
fi
if grep -q '^Error:' "$log"; then
  echo "forge test printed an error (above) but exited 0: counted as a failure" >&2
  exit 1
fi
if ! grep -Eq '^Ran [0-9]+ test suites? .*: [1-9][0-9]* tests passed, 0 failed' "$log"; then
  echo "forge test printed no summary of passing tests: no test ran" >&2
  exit 1
fi
