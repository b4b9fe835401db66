"""web3.py against a real dev node (issue 3 item 8).

Clique puts the signer's seal in extraData (97 bytes), so web3.py needs its proof-of-authority
middleware (ExtraDataToPOAMiddleware) to read blocks. With it: deploy, transact (legacy and
EIP-1559, through the node's dev accounts and through local signing from an account with no
ether), read events from receipts, eth_getLogs and a polling filter, and decode a custom error.
Balances change by the value only.

Run with `.tools/venv/bin/pytest tests/compat/test_web3.py` after `cargo build -p p2pe-node`
(scripts/test.sh makes the virtualenv from tests/compat/requirements.txt).
"""

import json
import os
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ExtraDataLengthError
from web3.middleware import ExtraDataToPOAMiddleware, SignAndSendRawMiddlewareBuilder

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = json.loads((Path(__file__).parent / "fixtures" / "Osaka.json").read_text())
DEV_MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()


def node_bin() -> str:
    """$P2PE_NODE_BIN, else the newest of target/{debug,release}/p2pe-node (as node.mjs)."""
    if os.environ.get("P2PE_NODE_BIN"):
        return os.environ["P2PE_NODE_BIN"]
    found = [ROOT / "target" / p / "p2pe-node" for p in ("debug", "release")]
    found = sorted((p for p in found if p.exists()), key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        raise RuntimeError("p2pe-node is not built: run `cargo build -p p2pe-node`")
    return str(found[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node_url():
    port = free_port()
    env = {**os.environ, "P2PE_LOG": os.environ.get("P2PE_LOG", "warn")}
    proc = subprocess.Popen(
        [node_bin(), "dev", "--http-addr", f"127.0.0.1:{port}", "--period", "1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.time() + 60
    seen = []
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"p2pe-node did not start: {seen}")
        seen.append(line)
        if line.startswith("JSON-RPC:"):
            break
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def w3(node_url):
    w3 = Web3(Web3.HTTPProvider(node_url))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    assert w3.is_connected()
    return w3


def dev_account(i: int):
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")


def deploy(w3, sender):
    osaka = w3.eth.contract(abi=ARTIFACT["abi"], bytecode=ARTIFACT["bytecode"])
    tx_hash = osaka.constructor().transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.2)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=ARTIFACT["abi"]), receipt


def test_blocks_need_the_poa_middleware(node_url, w3):
    plain = Web3(Web3.HTTPProvider(node_url))
    with pytest.raises(ExtraDataLengthError):
        plain.eth.get_block("latest")
    genesis = w3.eth.get_block(0)
    assert len(genesis.proofOfAuthorityData) == 32 + 20 + 65, "vanity, the one signer, an empty seal"
    for _ in range(100):
        if w3.eth.block_number >= 1:
            break
        time.sleep(0.1)
    block = w3.eth.get_block(1)
    assert len(block.proofOfAuthorityData) == 32 + 65, "vanity and the signer's seal"
    assert block.baseFeePerGas == 0
    assert w3.eth.chain_id == 1337


def test_deploy_transact_and_read_events_through_dev_accounts(w3):
    sender = w3.eth.accounts[1]
    assert sender == dev_account(1).address
    start = w3.eth.get_balance(sender)
    contract, deployed = deploy(w3, sender)
    assert len(w3.eth.get_code(contract.address)) > 0
    assert contract.functions.stored().call() == 0
    assert contract.functions.leadingZeros(1).call() == 255

    # EIP-1559 (web3.py's default when blocks carry baseFeePerGas), then legacy.
    h1 = contract.functions.store(41).transact({"from": sender})
    r1 = w3.eth.wait_for_transaction_receipt(h1, timeout=30, poll_latency=0.2)
    h2 = contract.functions.store(42).transact({"from": sender, "gasPrice": w3.eth.gas_price})
    r2 = w3.eth.wait_for_transaction_receipt(h2, timeout=30, poll_latency=0.2)
    assert [r1.type, r2.type] == [2, 0]
    assert [r1.status, r2.status] == [1, 1]
    assert r1.effectiveGasPrice == 0 and r2.effectiveGasPrice == 0
    assert contract.functions.stored().call() == 42

    # Events: from a receipt, from eth_getLogs, and from a polling filter.
    (ev,) = contract.events.Stored().process_receipt(r2)
    assert (ev.args.by, ev.args.value, ev.args.leadingZeros) == (sender, 42, 250)
    assert ev.transactionHash == h2 and ev.blockNumber == r2.blockNumber
    logs = contract.events.Stored.get_logs(from_block=deployed.blockNumber)
    assert [(e.args.value, e.transactionHash) for e in logs] == [(41, h1), (42, h2)]
    only_42 = contract.events.Stored.get_logs(from_block=0, argument_filters={"value": 42})
    assert [e.transactionHash for e in only_42] == [h2]

    event_filter = contract.events.Stored.create_filter(from_block="latest")
    h3 = contract.functions.store(43).transact({"from": sender})
    w3.eth.wait_for_transaction_receipt(h3, timeout=30, poll_latency=0.2)
    new = []
    for _ in range(50):
        new += event_filter.get_new_entries()
        if new:
            break
        time.sleep(0.1)
    assert [(e.args.value, e.transactionHash) for e in new] == [(43, h3)]
    assert w3.eth.uninstall_filter(event_filter.filter_id)

    # A value transfer: the sender loses exactly the value.
    to = Account.create().address
    h4 = w3.eth.send_transaction({"from": sender, "to": to, "value": 12345})
    assert w3.eth.wait_for_transaction_receipt(h4, timeout=30, poll_latency=0.2).status == 1
    assert w3.eth.get_balance(to) == 12345
    assert w3.eth.get_balance(sender) == start - 12345


def test_local_signing_from_an_account_with_no_ether(node_url):
    poor = Account.create()
    w3 = Web3(Web3.HTTPProvider(node_url))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(poor), layer=0)
    assert w3.eth.get_balance(poor.address) == 0
    contract, deployed = deploy(w3, poor.address)
    assert w3.eth.get_transaction(deployed.transactionHash).type == 2
    # A user-set fee, signed locally: accepted and not charged.
    tx_hash = contract.functions.store(7).transact(
        {"from": poor.address, "maxFeePerGas": Web3.to_wei(3, "gwei"), "maxPriorityFeePerGas": Web3.to_wei(1, "gwei")}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.2)
    assert receipt.status == 1 and receipt.effectiveGasPrice == 0
    assert w3.eth.get_transaction(tx_hash).maxFeePerGas == Web3.to_wei(3, "gwei")
    assert contract.functions.stored().call() == 7
    assert w3.eth.get_balance(poor.address) == 0


def test_custom_error_from_a_revert(w3):
    contract, _ = deploy(w3, w3.eth.accounts[2])
    big = 10**31
    selector = Web3.keccak(text="TooBig(uint256,uint256)")[:4].to_0x_hex()
    for attempt in (
        lambda: contract.functions.store(big).call(),
        lambda: contract.functions.store(big).estimate_gas({"from": w3.eth.accounts[2]}),
    ):
        with pytest.raises(ContractCustomError) as err:
            attempt()
        data = err.value.data
        assert data.startswith(selector), data
        assert w3.codec.decode(["uint256", "uint256"], bytes.fromhex(data[10:])) == (big, 10**30)


@pytest.mark.parametrize("kdf", ["scrypt", "pbkdf2"])
def test_an_eth_account_keystore_opens_in_p2pe_node(tmp_path, kdf):
    """Users' own keys (issue 16, part 4): a keystore written by eth-account, web3.py's signer."""
    account = Account.create()
    password = "web3.py password"
    keystore = Account.encrypt(account.key, password, kdf=kdf)
    path = tmp_path / "web3py.json"
    path.write_text(json.dumps(keystore))
    pw = tmp_path / "pw.txt"
    pw.write_text(password + "\n")
    ok = subprocess.run(
        [node_bin(), "account", "inspect", str(path), "--password-file", str(pw)],
        capture_output=True, text=True, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == account.address
    pw.write_text("wrong\n")
    wrong = subprocess.run(
        [node_bin(), "account", "inspect", str(path), "--password-file", str(pw)],
        capture_output=True, text=True, check=False,
    )
    assert wrong.returncode != 0 and "wrong password" in wrong.stderr, wrong.stderr
    assert account.key.hex().removeprefix("0x") not in wrong.stderr + wrong.stdout
