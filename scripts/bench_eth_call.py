#!/usr/bin/env python3
"""eth_call latency of a market-sized call on a running dev node.

Usage: p2pe-node dev --period 1 --http-addr 127.0.0.1:PORT &  then
       scripts/bench_eth_call.py http://127.0.0.1:PORT [N]

The call is EnergyMarket.clear(slot) on the first slot the keeper opened, with the block time
moved past its gate closure (blockOverrides), so it runs the whole clearing over the slot's price
levels: many storage reads in the market, the registry and the token. It reverts or succeeds the
same way every time; only the latency is measured (median, p90, max over N calls, one at a time).
"""
import json
import statistics
import sys
import time
import urllib.request

URL = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def rpc(method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(URL, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


contracts = json.loads(urllib.request.urlopen(URL + "/contracts.json").read())
market, start, length = contracts["market"], contracts["startTime"], contracts["slotLength"]
head = rpc("eth_getBlockByNumber", ["latest", False])["result"]
# The keeper keeps the next slots open; clear the second one, at its start (past its gate).
slot = (int(head["timestamp"], 16) - start) // length + 2
data = "0x8dfdb2f0" + format(slot, "064x")
call = [{"to": market, "data": data}, "latest", None, {"time": hex(start + slot * length)}]
times = []
for _ in range(N):
    t = time.perf_counter()
    r = rpc("eth_call", call)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(json.dumps({
    "call": "EnergyMarket.clear(slot) at latest, time past the gate",
    "outcome": "ok" if "result" in r else r["error"]["message"][:80],
    "n": N,
    "median_ms": round(statistics.median(times), 2),
    "p90_ms": round(times[int(N * 0.9) - 1], 2),
    "max_ms": round(times[-1], 2),
}))
