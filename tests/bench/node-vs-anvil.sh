#!/usr/bin/env bash
# Issue 2, item 8: end-to-end throughput of p2pe-node against anvil, in one run
# on one machine, with the same workload, the same block gas limit (3e9) and a
# 1 s block time; optionally the node's RSS after 1,000,000 transactions.
#
# Usage: tests/bench/node-vs-anvil.sh [options]   (see --help)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GAS_LIMIT=3000000000
TXS=20000
SENDERS=200
WORKLOADS="transfer contract"
ROUNDS=3
ONLY=""
BUILD=1
RSS=0
RSS_TOTAL=${RSS_TOTAL:-1000000}
RSS_CHUNK=${RSS_CHUNK:-50000}
RSS_SENDERS=${RSS_SENDERS:-1000}
OUT=""
LOADGEN_EXTRA=()

usage() {
    cat <<EOF
Usage: $0 [options] [-- extra p2pe-loadgen flags]

Runs p2pe-loadgen against a fresh anvil and a fresh 'p2pe-node dev' chain for
each workload, one after the other, and prints end-to-end tx/s (first send to
last transaction mined) of each and the ratio node/anvil.

  anvil:     anvil --base-fee 0 --gas-price 0 --block-time 1 --gas-limit $GAS_LIMIT
  p2pe-node: p2pe-node dev --period 1 --gas-limit $GAS_LIMIT --datadir <tmp>  (SQLite persistence on)

Options:
  --txs N            transactions per workload (default $TXS, the issue asks for >= 20000)
  --senders N        sender accounts (default $SENDERS, must be >= 200)
  --workloads "W.."  workloads to run (default "$WORKLOADS")
  --rounds N         repeat the whole comparison N times, alternating anvil and
                     node, and report the median of each (default $ROUNDS; the
                     machine is shared, so single runs are noisy)
  --only anvil|node  run against one side only (no ratio)
  --rss-million      afterwards, send $RSS_TOTAL transfers to a fresh p2pe-node in
                     chunks of \$RSS_CHUNK (default $RSS_CHUNK) from \$RSS_SENDERS
                     (default $RSS_SENDERS) senders and report its VmRSS / VmHWM
  --no-build         do not run cargo build --release first
  --out DIR          where logs and results go (default tests/artifacts/bench/<timestamp>)
  -h, --help         this help

Environment: ANVIL (path of the anvil binary; default: the one installed by
'npm ci --prefix tests'), P2PE_NODE, P2PE_LOADGEN (paths of the binaries;
default target/release/...).
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --txs) TXS=$2; shift 2 ;;
        --senders) SENDERS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --rss-million) RSS=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; LOADGEN_EXTRA=("$@"); break ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "node-vs-anvil: $*" >&2; exit 1; }

[[ "$SENDERS" =~ ^[0-9]+$ && "$SENDERS" -ge 200 ]] || die "--senders must be a number >= 200 (issue 2 bench rule), got '$SENDERS'"
[[ "$TXS" =~ ^[0-9]+$ && "$TXS" -ge 1 ]] || die "--txs must be a positive number"
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || die "--rounds must be a positive number"
case "$ONLY" in ""|anvil|node) ;; *) die "--only takes 'anvil' or 'node'" ;; esac
command -v python3 >/dev/null || die "python3 is required (free ports, JSON)"

RUN_ANVIL=1; RUN_NODE=1
[[ "$ONLY" == node ]] && RUN_ANVIL=0
[[ "$ONLY" == anvil ]] && RUN_NODE=0

# ------------------------------------------------------------------ binaries
if [[ $BUILD == 1 ]]; then
    pkgs=(-p p2pe-tests)
    [[ $RUN_NODE == 1 || $RSS == 1 ]] && pkgs+=(-p p2pe-node)
    echo "==> cargo build --release ${pkgs[*]}"
    (cd "$ROOT" && cargo build --release "${pkgs[@]}") || die "cargo build failed"
fi
LOADGEN=${P2PE_LOADGEN:-$ROOT/target/release/p2pe-loadgen}
NODE_BIN=${P2PE_NODE:-$ROOT/target/release/p2pe-node}
if [[ -z "${ANVIL:-}" ]]; then
    for cand in "$ROOT/tests/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" \
                "$ROOT/tests/node_modules/.bin/anvil"; do
        if [[ -x "$cand" ]]; then ANVIL=$cand; break; fi
    done
fi
[[ -x "$LOADGEN" ]] || die "load generator not found at $LOADGEN (cargo build --release -p p2pe-tests)"
if [[ $RUN_NODE == 1 || $RSS == 1 ]]; then
    [[ -x "$NODE_BIN" ]] || die "p2pe-node not found at $NODE_BIN (cargo build --release -p p2pe-node)"
fi
if [[ $RUN_ANVIL == 1 ]]; then
    [[ -n "${ANVIL:-}" && -x "$ANVIL" ]] || die "anvil not found: run 'npm ci --prefix tests' (installs @foundry-rs/anvil from tests/package.json) or set ANVIL=/path/to/anvil"
fi

OUT=${OUT:-$ROOT/tests/artifacts/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)

# ------------------------------------------------------------ process control
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # stop PID: SIGTERM, then SIGKILL after 5 s
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_rpc() { # wait_rpc URL PID LOG: until eth_chainId answers (60 s)
    local url=$1 pid=$2 log=$3
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "process $pid exited before $url answered (log: $log)"; }
        if python3 - "$url" <<'PY' 2>/dev/null; then return 0; fi
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode(), headers={"content-type": "application/json"})
sys.exit(0 if "result" in json.load(urllib.request.urlopen(req, timeout=1)) else 1)
PY
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$url did not answer eth_chainId within 60 s (log: $log)"
}

STARTED_PID=""
declare -A TPS
start_anvil() { # start_anvil PORT LOG
    "$ANVIL" --base-fee 0 --gas-price 0 --block-time 1 --gas-limit "$GAS_LIMIT" \
        --port "$1" --silent >"$2" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
start_node() { # start_node PORT LOG DATADIR
    "$NODE_BIN" dev --period 1 --http-addr "127.0.0.1:$1" --gas-limit "$GAS_LIMIT" \
        --datadir "$3" >"$2" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

json_field() { # json_field FILE FIELD
    python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])' "$1" "$2"
}

# run_one SIDE WORKLOAD ROUND: appends to TPS[SIDE-WORKLOAD], leaves OUT/SIDE-WORKLOAD-rROUND.{json,log,loadgen.log}
# (runs in the main shell, not in $(...), so the EXIT trap sees every started pid)
run_one() {
    local side=$1 workload=$2 round=$3 port log json rc tag
    tag="$side-$workload-r$round"
    port=$(free_port)
    log="$OUT/$tag.log"
    json="$OUT/$tag.json"
    if [[ $side == anvil ]]; then
        start_anvil "$port" "$log"
    else
        start_node "$port" "$log" "$SCRATCH/node-$workload-$round"
    fi
    local pid=$STARTED_PID url="http://127.0.0.1:$port"
    wait_rpc "$url" "$pid" "$log"
    echo "==> round $round, $side / $workload: $TXS txs from $SENDERS senders ($url, pid $pid)"
    rc=0
    "$LOADGEN" --rpc "$url" --workload "$workload" --txs "$TXS" --senders "$SENDERS" \
        --json "${LOADGEN_EXTRA[@]}" >"$json" 2>"$OUT/$tag.loadgen.log" || rc=$?
    stop "$pid"
    if [[ $rc -ne 0 ]]; then
        tail -n 15 "$OUT/$tag.loadgen.log" >&2
        [[ -s "$json" ]] || die "loadgen failed against $side ($workload), exit $rc; logs in $OUT"
        echo "WARNING: $side/$workload: loadgen exit $rc (rejected or failed transactions), see $OUT" >&2
    fi
    python3 - "$json" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("    %.0f tx/s end to end (%.2f s; send phase %.0f tx/s; %d blocks; %d rejected; ok=%s)"
      % (r["tps"], r["elapsed_secs"], r["send_tps"], r["blocks_used"], r["send_errors"], r["ok"]))
PY
    TPS[$side-$workload]+="$(json_field "$json" tps) "
}

echo "==> results and logs: $OUT"
echo "==> machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "==> load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        if [[ $RUN_ANVIL == 1 ]]; then run_one anvil "$w" "$r"; fi
        if [[ $RUN_NODE == 1 ]]; then run_one node "$w" "$r"; fi
    done
done
echo "==> load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

SUMMARY="$OUT/summary.txt"
{
    echo
    [[ -z "${WORKLOADS// /}" ]] || echo "end-to-end tx/s, median of $ROUNDS round(s) (each round's value in brackets)"
    for w in $WORKLOADS; do
        python3 - "$w" "${TPS[anvil-$w]:-}" "${TPS[node-$w]:-}" <<'PY'
import statistics, sys
w, a, n = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
def cell(v):
    return "%.0f [%s]" % (statistics.median(v), " ".join("%.0f" % x for x in v)) if v else "-"
ratio = "%.2fx" % (statistics.median(n) / statistics.median(a)) if a and n else "-"
print("%-9s anvil %-26s p2pe-node %-26s node/anvil %s" % (w, cell(a), cell(n), ratio))
PY
    done
} | tee "$SUMMARY"

# ------------------------------------------------------------------ RSS run
if [[ $RSS == 1 ]]; then
    port=$(free_port)
    log="$OUT/node-rss.log"
    start_node "$port" "$log" "$SCRATCH/node-rss"
    pid=$STARTED_PID
    url="http://127.0.0.1:$port"
    wait_rpc "$url" "$pid" "$log"
    echo "==> RSS run: $RSS_TOTAL transfers to p2pe-node (pid $pid) in chunks of $RSS_CHUNK from $RSS_SENDERS senders"
    sent=0; i=0
    while [[ $sent -lt $RSS_TOTAL ]]; do
        n=$(( RSS_TOTAL - sent < RSS_CHUNK ? RSS_TOTAL - sent : RSS_CHUNK ))
        i=$((i + 1))
        rc=0
        "$LOADGEN" --rpc "$url" --workload transfer --txs "$n" --senders "$RSS_SENDERS" --json \
            "${LOADGEN_EXTRA[@]}" >"$OUT/rss-$i.json" 2>"$OUT/rss-$i.loadgen.log" || rc=$?
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "p2pe-node died during the RSS run (chunk $i)"; }
        [[ $rc -eq 0 ]] || { tail -n 15 "$OUT/rss-$i.loadgen.log" >&2; die "loadgen chunk $i failed (exit $rc)"; }
        sent=$((sent + n))
        rss_now=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$pid/status")
        printf '    chunk %3d: %7d txs total, %6.0f tx/s, VmRSS %s\n' "$i" "$sent" "$(json_field "$OUT/rss-$i.json" tps)" "$rss_now"
    done
    {
        echo
        echo "p2pe-node after $sent transactions (datadir $(du -sh "$SCRATCH/node-rss" | cut -f1)):"
        grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status"
    } | tee -a "$SUMMARY"
    stop "$pid"
fi
echo "==> summary written to $SUMMARY"
