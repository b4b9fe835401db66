#!/usr/bin/env bash
# One market slot end to end with cast: deposit, bid and ask, clear, meter readings, settle.
#
#   tests/scripts/market-cast.sh RPC_URL CONTRACTS_JSON
#
# Works against `p2pe-node dev --slot-length 10` (dev accounts 0 and 1 trade; their meters are
# the mnemonic keys 100 and 101). Prints each step and exits non-zero on any failure.
set -euo pipefail
rpc=${1:?usage: market-cast.sh RPC_URL CONTRACTS_JSON}
contracts=${2:?usage: market-cast.sh RPC_URL CONTRACTS_JSON}
here=$(cd "$(dirname "$0")/../.." && pwd)
cast=${CAST:-$here/tests/node_modules/.bin/cast}
mn="test test test test test test test test test test test junk"
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$contracts" "$1"; }
token=$(field token); market=$(field market); readings=$(field readings)
start=$(field startTime); len=$(field slotLength)
seller=$($cast wallet address --mnemonic "$mn" --mnemonic-index 0)
buyer=$($cast wallet address --mnemonic "$mn" --mnemonic-index 1)
send() { # send FROM_INDEX TO SIG ARGS...
  local who=$1; shift
  local out
  out=$($cast send --rpc-url "$rpc" --mnemonic "$mn" --mnemonic-index "$who" --json "$@")
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r['status']=='0x1' else 1)" "$out" \
    || { echo "failed: $*: $out" >&2; exit 1; }
  echo "$out"
}
# A reading's gas depends on the time it lands (a slot that turns final in between adds work), and
# eth_estimateGas runs on the latest block, a second earlier: readings get a fixed, ample gas limit
# (fees are zero, so it costs nothing; about 100k is used).
reading() { # reading METER_INDEX IMPORT_WH EXPORT_WH TIMESTAMP
  send "$1" "$readings" "submitReading(uint64,uint64,uint64)" "$2" "$3" "$4" --gas-limit 300000 >/dev/null
}
now() { $cast block latest --field timestamp --rpc-url "$rpc"; }
wait_until() { while [ "$(now)" -lt "$1" ]; do sleep 0.5; done; }

echo "deposit 100 credits each"
for i in 0 1; do
  send $i "$token" "approve(address,uint256)" "$market" 100000000000000000000 >/dev/null
  send $i "$market" "deposit(uint256)" 100000000000000000000 >/dev/null
done
t0=$(now)
reading 100 1000 5000 "$t0"
reading 101 2000 0 "$t0"
# Choose the slot now, with margin for the two orders before its gate closes.
slot=$(( ( $(now) + 12 - start ) / len + 1 ))
slot_start=$(( start + slot * len ))
echo "slot $slot starts at $slot_start"
# Only the operator opens a slot (an order for a slot not open reverts with SlotNotOpen): the dev
# node's keeper opens the next slots ahead; wait for it.
for _ in $(seq 50); do
  status=$($cast call "$market" "slotInfo(uint64)((uint8,uint256,uint256,uint256,uint64,uint8,uint8,uint8))" "$slot" --rpc-url "$rpc" | tr -d '(' | cut -d, -f1)
  [ "$status" = 1 ] && break
  sleep 0.1
done
[ "$status" = 1 ] || { echo "slot $slot was not opened by the keeper" >&2; exit 1; }
echo "ask 1000 Wh at 0.10, bid 800 Wh at 0.20 credit/kWh"
send 0 "$market" "placeAsk(uint64,uint32,uint256)" "$slot" 1000 100000000000000000 >/dev/null
send 1 "$market" "placeBid(uint64,uint32,uint256)" "$slot" 800 200000000000000000 >/dev/null
gate=$($cast call "$market" "gateClosureTime(uint64)(uint256)" "$slot" --rpc-url "$rpc" | awk '{print $1}')
wait_until "$gate"
send 2 "$market" "clear(uint64)" "$slot" >/dev/null
info=$($cast call "$market" "slotInfo(uint64)((uint8,uint256,uint256,uint256,uint64,uint8,uint8,uint8))" "$slot" --rpc-url "$rpc")
echo "cleared: $info"
case "$info" in *", 800, "*) ;; *) echo "expected 800 Wh cleared" >&2; exit 1 ;; esac
wait_until $(( slot_start + 1 ))
t1=$(now)
reading 100 1000 5800 "$t1"
reading 101 2800 0 "$t1"
opens=$($cast call "$market" "settlementOpensAt(uint64)(uint256)" "$slot" --rpc-url "$rpc" | awk '{print $1}')
wait_until "$opens"
receipt=$(send 3 "$market" "settle(uint64,address[])" "$slot" "[$seller,$buyer]")
settled=$(python3 -c "import json,sys; print(len(json.loads(sys.argv[1])['logs']))" "$receipt")
echo "settled with $settled events"
[ "$settled" -ge 2 ] || { echo "expected settlement events" >&2; exit 1; }
pos=$($cast call "$market" "positionOf(uint64,address)((uint32,uint256,uint32,uint256,bool))" "$slot" "$buyer" --rpc-url "$rpc")
case "$pos" in *true*) echo "buyer settled: $pos" ;; *) echo "buyer not settled: $pos" >&2; exit 1 ;; esac
echo "OK"
