// MetaMask's JSON-RPC call pattern, replayed request by request against a real node, with
// every answer checked against the execution-apis schemas (shapes.mjs):
//
// - adding the network: eth_chainId on the URL;
// - EIP-1559 detection: eth_getBlockByNumber("latest", false) must carry baseFeePerGas;
// - the block tracker polls eth_blockNumber, and MetaMask rewrites "latest" to that number in
//   hex for eth_getBalance, eth_getCode, eth_getTransactionCount, eth_call and
//   eth_getBlockByNumber;
// - a send: eth_getCode(to) (simple send or contract interaction), the latest block for the
//   gas limit, eth_estimateGas({from, to, value, data, type}) buffered ×1.5, eth_gasPrice (its
//   fallback on networks its gas API does not know), eth_getTransactionCount(from, <number>),
//   eth_sendRawTransaction of an EIP-1559 transaction, eth_getTransactionReceipt polling on each
//   new block, then eth_getBlockByHash(receipt.blockHash, false).
//
// MetaMask may sign non-zero fees on a zero-fee chain (MetaMask #19863): the node must accept
// them even from an account with no ether, and balances must change by the value only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ethers } from 'ethers';
import { startDevNode, DEV_MNEMONIC } from './node.mjs';
import { assertShape, block, Receipt } from './shapes.mjs';

const osaka = JSON.parse(readFileSync(new URL('./fixtures/Osaka.json', import.meta.url), 'utf8'));

let node;
before(async () => {
  // MetaMask's requests carry its extension's origin, which the node refuses unless it is allowed.
  // No --http-corsdomain: browser-extension origins (MetaMask's) are served by default.
  node = await startDevNode(['--period', '1']);
});
after(async () => {
  await node?.stop();
});

/** A JSON-RPC client sending exactly what MetaMask's fetch middleware sends. */
function metamaskRpc(url) {
  const log = [];
  async function request(method, params = []) {
    const id = Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
    const res = await fetch(url, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json', Origin: 'chrome-extension://nkbihfbeogaeaoehlefnkodbefgpgknn' },
      body: JSON.stringify({ id, jsonrpc: '2.0', method, params }),
    });
    assert.equal(res.status, 200, `${method}: HTTP ${res.status}`);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${method}: content type`);
    const body = await res.json();
    log.push({ method, params, body });
    assert.equal(body.jsonrpc, '2.0', `${method}: jsonrpc`);
    assert.equal(body.id, id, `${method}: the id is echoed exactly`);
    if (body.error) throw Object.assign(new Error(`${method}: ${body.error.message}`), { rpc: body.error });
    assert.ok('result' in body, `${method}: a result`);
    return body.result;
  }
  return { request, log };
}

const hexNumber = (h) => BigInt(h);
const hex = (n) => `0x${BigInt(n).toString(16)}`;

/**
 * The block tracker's poll: eth_blockNumber. MetaMask pins "latest" to the answer, and its
 * retry-on-empty middleware expects a block at that number to exist.
 */
async function poll(rpc) {
  const n = await rpc.request('eth_blockNumber');
  assertShape(n, 'uint', 'eth_blockNumber');
  return n;
}

/** Adding the network, then NetworkController.lookupNetwork's EIP-1559 detection. */
async function addNetwork(rpc) {
  const chainId = await rpc.request('eth_chainId');
  assertShape(chainId, 'uint', 'eth_chainId');
  assert.equal(chainId, '0x539', 'the dev chain id 1337, as the user typed it');
  const latest = await rpc.request('eth_getBlockByNumber', ['latest', false]);
  assertShape(latest, block(false), 'eth_getBlockByNumber("latest", false)');
  assert.notEqual(latest.baseFeePerGas, undefined, 'MetaMask detects EIP-1559 by baseFeePerGas !== undefined');
  assert.equal(latest.baseFeePerGas, '0x0');
  return chainId;
}

/**
 * TransactionController: type detection, gas, fees and nonce, as MetaMask asks for them.
 * Returns the unsigned EIP-1559 transaction MetaMask would sign.
 */
async function prepare(rpc, latestHex, txParams, fees) {
  const code = await rpc.request('eth_getCode', [txParams.to, latestHex]);
  assertShape(code, 'bytes', 'eth_getCode');
  const kind = code === '0x' ? 'simpleSend' : 'contractInteraction';

  const latest = await rpc.request('eth_getBlockByNumber', [latestHex, false]);
  assertShape(latest, block(false), `eth_getBlockByNumber(${latestHex}, false)`);
  assert.equal(latest.number, latestHex, 'the pinned block is the one asked for');

  const request = { ...txParams, value: txParams.value ?? '0x0', type: '0x2' };
  const estimate = await rpc.request('eth_estimateGas', [request]);
  assertShape(estimate, 'uint', 'eth_estimateGas');
  // addGasBuffer: ×1.5 unless that passes 90% of the block gas limit.
  const maxGas = (hexNumber(latest.gasLimit) * 90n) / 100n;
  const padded = (hexNumber(estimate) * 150n) / 100n;
  const gas = padded < maxGas ? padded : maxGas;

  const gasPrice = await rpc.request('eth_gasPrice');
  assertShape(gasPrice, 'uint', 'eth_gasPrice');
  assert.equal(gasPrice, '0x0');

  const nonce = await rpc.request('eth_getTransactionCount', [txParams.from, latestHex]);
  assertShape(nonce, 'uint', 'eth_getTransactionCount');

  // With eth_gasPrice estimates MetaMask uses the gas price for both EIP-1559 fields;
  // `fees` models a wallet that fills in its own.
  const maxFeePerGas = fees?.maxFeePerGas ?? hexNumber(gasPrice);
  const maxPriorityFeePerGas = fees?.maxPriorityFeePerGas ?? hexNumber(gasPrice);
  return {
    kind,
    tx: {
      type: 2,
      chainId: 1337n,
      nonce: Number(hexNumber(nonce)),
      to: txParams.to,
      value: hexNumber(request.value),
      data: txParams.data ?? '0x',
      gasLimit: gas,
      maxFeePerGas,
      maxPriorityFeePerGas,
    },
  };
}

/** Sends and tracks like PendingTransactionTracker; returns the receipt and its block. */
async function sendAndTrack(rpc, raw) {
  const hash = await rpc.request('eth_sendRawTransaction', [raw]);
  assertShape(hash, 'hash32', 'eth_sendRawTransaction');
  assert.equal(hash, ethers.keccak256(raw), 'the hash of the signed bytes');
  const deadline = Date.now() + 30_000;
  for (;;) {
    await poll(rpc);
    const receipt = await rpc.request('eth_getTransactionReceipt', [hash]);
    if (receipt !== null) {
      assertShape(receipt, Receipt, 'eth_getTransactionReceipt');
      const blk = await rpc.request('eth_getBlockByHash', [receipt.blockHash, false]);
      assertShape(blk, block(false), 'eth_getBlockByHash');
      assert.equal(blk.hash, receipt.blockHash);
      assert.equal(blk.number, receipt.blockNumber);
      assert.ok(blk.transactions.includes(hash), 'the block lists the transaction');
      return { hash, receipt, block: blk };
    }
    assert.ok(Date.now() < deadline, `no receipt for ${hash}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function balanceAt(rpc, address, latestHex) {
  const b = await rpc.request('eth_getBalance', [address, latestHex]);
  assertShape(b, 'uint', 'eth_getBalance');
  return hexNumber(b);
}

const devWallet = (i) => ethers.HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${i}`);

test('MetaMask: add the network, then send ether with its own non-zero fees; only the value moves', async () => {
  const rpc = metamaskRpc(node.url);
  await addNetwork(rpc);
  const wallet = devWallet(5);
  const to = ethers.Wallet.createRandom().address;

  let latestHex = await poll(rpc);
  const before = await balanceAt(rpc, wallet.address, latestHex);
  assert.equal(await balanceAt(rpc, to, latestHex), 0n);

  const value = ethers.parseEther('1.25');
  const fees = { maxFeePerGas: ethers.parseUnits('3', 'gwei'), maxPriorityFeePerGas: ethers.parseUnits('1.5', 'gwei') };
  const { kind, tx } = await prepare(rpc, latestHex, { from: wallet.address, to, value: hex(value) }, fees);
  assert.equal(kind, 'simpleSend');
  assert.equal(tx.gasLimit, 31_500n, '21,000 ×1.5: eth_estimateGas found the exact cost of a transfer');
  const { receipt, block: blk } = await sendAndTrack(rpc, await wallet.signTransaction(tx));
  assert.equal(receipt.status, '0x1');
  assert.equal(receipt.type, '0x2');
  assert.equal(receipt.gasUsed, '0x5208');
  assert.equal(receipt.effectiveGasPrice, '0x0', 'the signed fees are not charged');
  assert.equal(receipt.to, to.toLowerCase());
  assert.equal(receipt.contractAddress, null);
  assert.equal(blk.baseFeePerGas, '0x0');

  latestHex = await poll(rpc);
  assert.ok(hexNumber(latestHex) >= hexNumber(receipt.blockNumber));
  assert.equal(await balanceAt(rpc, wallet.address, latestHex), before - value, 'the sender lost exactly the value');
  assert.equal(await balanceAt(rpc, to, latestHex), value);
  const nonce = await rpc.request('eth_getTransactionCount', [wallet.address, latestHex]);
  assert.equal(nonce, hex(tx.nonce + 1));
});

test('MetaMask: a contract interaction from an account with no ether, with fees MetaMask filled in', async () => {
  // Set-up outside MetaMask: deploy the Osaka fixture from a funded account.
  const provider = new ethers.JsonRpcProvider(node.url, undefined, { staticNetwork: true, pollingInterval: 200 });
  const deployer = devWallet(6).connect(provider);
  const contract = await new ethers.ContractFactory(osaka.abi, osaka.bytecode, deployer).deploy();
  await contract.waitForDeployment();
  const address = await contract.getAddress();
  provider.destroy();

  const rpc = metamaskRpc(node.url);
  await addNetwork(rpc);
  const poor = ethers.Wallet.createRandom();
  let latestHex = await poll(rpc);
  assert.equal(await balanceAt(rpc, poor.address, latestHex), 0n);

  const data = contract.interface.encodeFunctionData('store', [4242n]);
  const fees = { maxFeePerGas: ethers.parseUnits('2.5', 'gwei'), maxPriorityFeePerGas: ethers.parseUnits('2.5', 'gwei') };
  const { kind, tx } = await prepare(rpc, latestHex, { from: poor.address, to: address, data }, fees);
  assert.equal(kind, 'contractInteraction', 'eth_getCode found the contract at the pinned block');
  assert.ok(tx.gasLimit * tx.maxFeePerGas > 0n, 'a fee MetaMask thinks the account cannot pay');
  const { receipt } = await sendAndTrack(rpc, await poor.signTransaction(tx));
  assert.equal(receipt.status, '0x1');
  assert.equal(receipt.effectiveGasPrice, '0x0');
  assert.equal(receipt.logs.length, 1, 'Stored was emitted');
  assert.equal(receipt.logs[0].address, address.toLowerCase());
  assert.equal(receipt.logs[0].transactionHash, receipt.transactionHash);
  assert.equal(receipt.logs[0].blockHash, receipt.blockHash);

  latestHex = await poll(rpc);
  assert.equal(await balanceAt(rpc, poor.address, latestHex), 0n, 'still no ether, nothing charged');
  // A dApp read through MetaMask: eth_call pinned to the block number.
  const stored = await rpc.request('eth_call', [{ to: address, data: contract.interface.encodeFunctionData('stored') }, latestHex]);
  assertShape(stored, 'bytes', 'eth_call');
  assert.equal(BigInt(stored), 4242n);
});
