// ethers v6 against a real dev node (issue 3 item 8): deploy, call and send with legacy (its
// default when the base fee is 0) and EIP-1559 transactions, a custom error decoded from a
// revert, events through a WebSocket subscription (`contract.on`), and the JSON-RPC batches
// JsonRpcProvider makes on its own. Balances change by the value only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ethers } from 'ethers';
import { startDevNode, DEV_MNEMONIC } from './node.mjs';

const osaka = JSON.parse(readFileSync(new URL('./fixtures/Osaka.json', import.meta.url), 'utf8'));

/** A JsonRpcProvider that records the size of every payload it posts (1 unless batched). */
class RecordingProvider extends ethers.JsonRpcProvider {
  payloads = [];
  async _send(payload) {
    this.payloads.push(Array.isArray(payload) ? payload.map((p) => p.method) : [payload.method]);
    return super._send(payload);
  }
}

let node;
let provider;
before(async () => {
  node = await startDevNode(['--period', '1']);
  provider = new RecordingProvider(node.url, undefined, { pollingInterval: 200 });
});
after(async () => {
  provider?.destroy();
  await node?.stop();
});

const devWallet = (i) => ethers.HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${i}`).connect(provider);

async function deploy(signer, overrides = {}) {
  const contract = await new ethers.ContractFactory(osaka.abi, osaka.bytecode, signer).deploy(overrides);
  const receipt = await contract.deploymentTransaction().wait();
  assert.equal(receipt.status, 1);
  return { contract, receipt };
}

test('ethers: deploy, call and send with legacy and EIP-1559 transactions; nothing is charged', async () => {
  const wallet = devWallet(1);
  const start = await provider.getBalance(wallet.address);

  const { contract, receipt: deployed } = await deploy(wallet);
  const deployTx = await provider.getTransaction(deployed.hash);
  assert.equal(deployTx.type, 0, 'a zero base fee makes ethers choose a legacy transaction');
  assert.equal(deployTx.gasPrice, 0n, 'priced by eth_gasPrice');
  assert.equal(deployed.contractAddress, await contract.getAddress());
  assert.ok((await provider.getCode(deployed.contractAddress)).length > 2);

  // Calls.
  assert.equal(await contract.stored(), 0n);
  assert.equal(await contract.leadingZeros(1n), 255n, 'CLZ runs (Osaka)');

  // A legacy send (the default) and an EIP-1559 one with the fees a user might set.
  const legacy = await contract.store(11n);
  assert.equal(legacy.type, 0);
  const r1 = await legacy.wait();
  assert.equal(r1.status, 1);
  assert.equal(await contract.stored(), 11n);
  const eip1559 = await contract.store(22n, { type: 2, maxFeePerGas: ethers.parseUnits('2', 'gwei'), maxPriorityFeePerGas: 1n });
  assert.equal(eip1559.type, 2);
  const r2 = await eip1559.wait();
  assert.equal(r2.status, 1);
  assert.equal(r2.gasPrice, 0n, 'effectiveGasPrice 0 whatever the signed fees');
  assert.equal(await contract.stored(), 22n);
  const [log] = r2.logs.map((l) => contract.interface.parseLog(l));
  assert.equal(log.name, 'Stored');
  assert.equal(log.args.by, wallet.address);
  assert.equal(log.args.value, 22n);

  // A value transfer of each type: the balances move by the value only.
  const to = ethers.Wallet.createRandom().address;
  const t1 = await (await wallet.sendTransaction({ to, value: 1000n })).wait();
  const t2 = await (await wallet.sendTransaction({ to, value: 2000n, type: 2, maxFeePerGas: 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n })).wait();
  assert.deepEqual([t1.type, t2.type], [0, 2]);
  assert.equal(await provider.getBalance(to), 3000n);
  assert.equal(await provider.getBalance(wallet.address), start - 3000n, 'only the values left the sender');

  // Deploying with EIP-1559 from an account with no ether.
  const poor = ethers.Wallet.createRandom().connect(provider);
  const { receipt: poorDeploy } = await deploy(poor, { type: 2, maxFeePerGas: 3n * 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n });
  assert.equal((await provider.getTransaction(poorDeploy.hash)).type, 2);
  assert.equal(await provider.getBalance(poor.address), 0n);
});

test('ethers: a custom error is decoded from the revert data (TooBig)', async () => {
  const { contract } = await deploy(devWallet(2));
  const big = 10n ** 31n;
  // eth_call: ethers decodes the error with the contract's ABI.
  await assert.rejects(contract.store.staticCall(big), (e) => {
    assert.equal(e.code, 'CALL_EXCEPTION', e.message);
    assert.equal(e.action, 'call');
    assert.equal(e.revert?.name, 'TooBig', `decoded: ${e.message}`);
    assert.deepEqual([...e.revert.args], [big, 10n ** 30n]);
    return true;
  });
  // Sending: the node's eth_estimateGas reports the revert with its data; ethers leaves the
  // decoding of an estimate's data to the caller (interface.parseError).
  await assert.rejects(contract.store(big), (e) => {
    assert.equal(e.code, 'CALL_EXCEPTION', e.message);
    assert.equal(e.action, 'estimateGas');
    const decoded = contract.interface.parseError(e.data);
    assert.equal(decoded?.name, 'TooBig', e.message);
    assert.deepEqual([...decoded.args], [big, 10n ** 30n]);
    return true;
  });
});

test('ethers: events through a WebSocket subscription (contract.on)', async () => {
  const { contract } = await deploy(devWallet(3));
  const address = await contract.getAddress();
  const ws = new ethers.WebSocketProvider(node.wsUrl);
  try {
    const watched = new ethers.Contract(address, osaka.abi, ws);
    const seen = [];
    let done;
    const twoEvents = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`events seen: ${JSON.stringify(seen)}`)), 30_000);
      done = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    await watched.on('Stored', (by, value, leadingZeros, event) => {
      seen.push({ by, value: value.toString(), leadingZeros: leadingZeros.toString(), tx: event.log.transactionHash });
      if (seen.length === 2) done();
    });
    // ethers sends eth_subscribe("logs") when the listener is added; a later request on the same
    // socket is answered after it, so the subscription is in place before anything is sent.
    await ws.send('eth_blockNumber', []);
    const a = await (await contract.store(5n)).wait();
    const b = await (await contract.store(1n << 90n)).wait();
    await twoEvents;
    const sender = devWallet(3).address;
    assert.deepEqual(seen, [
      { by: sender, value: '5', leadingZeros: '253', tx: a.hash },
      { by: sender, value: (1n << 90n).toString(), leadingZeros: '165', tx: b.hash },
    ]);
    await watched.removeAllListeners();
  } finally {
    await ws.destroy();
  }
});

test('ethers: concurrent requests go out as one JSON-RPC batch and each answer matches its request', async () => {
  const wallets = [0, 1, 2, 3, 4].map(devWallet);
  const before = provider.payloads.length;
  const [balances, number, chainId] = await Promise.all([
    Promise.all(wallets.map((w) => provider.getBalance(w.address))),
    provider.getBlockNumber(),
    provider.send('eth_chainId', []),
  ]);
  const batches = provider.payloads.slice(before).filter((p) => p.length > 1);
  assert.ok(batches.length >= 1, `ethers batched: ${JSON.stringify(provider.payloads.slice(before))}`);
  assert.ok(batches.some((b) => b.filter((m) => m === 'eth_getBalance').length === 5), JSON.stringify(batches));
  assert.equal(chainId, '0x539');
  assert.ok(number > 0);
  // The same balances one by one, outside any batch.
  for (const [i, w] of wallets.entries()) {
    const single = BigInt(await (await fetch(node.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'eth_getBalance', params: [w.address, 'latest'] }),
    })).json().then((r) => r.result));
    assert.equal(balances[i], single, `balance of ${w.address}`);
  }
});
