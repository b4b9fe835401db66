// Response shapes against the execution-apis schemas (issue 3 item 7), for every transaction
// type the node accepts, waiting and included: eth_getTransactionByHash, ...ByBlockHashAndIndex,
// eth_getBlockByNumber/ByHash with hashes and full transactions, eth_getTransactionReceipt,
// eth_getBlockReceipts, eth_getLogs, eth_feeHistory, and the null answers for unknown objects.
// The first test shows the checks themselves catch what they claim to.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ethers } from 'ethers';
import { startDevNode, DEV_MNEMONIC } from './node.mjs';
import { assertShape, check, block, FeeHistory, Receipt, Log, transactionInfo, pendingTransaction } from './shapes.mjs';

const osaka = JSON.parse(readFileSync(new URL('./fixtures/Osaka.json', import.meta.url), 'utf8'));

test('the shape checks reject what the spec forbids', () => {
  assert.deepEqual(check('0x0', 'uint'), []);
  assert.deepEqual(check('0x1f', 'uint'), []);
  assert.equal(check('0x01', 'uint').length, 1, 'a leading zero');
  assert.equal(check('0x', 'uint').length, 1, 'no digits');
  assert.equal(check('0x1F', 'uint').length, 1, 'upper case');
  assert.equal(check(31, 'uint').length, 1, 'a JSON number');
  assert.equal(check('0x' + 'A'.repeat(64), 'hash32').length, 1);
  assert.equal(check('0x' + 'a'.repeat(63), 'hash32').length, 1);
  assert.deepEqual(check('0x' + 'aB'.repeat(20), 'address'), [], 'checksummed addresses are allowed');
  assert.equal(check(1.5, 'ratio').length, 1);
  const log = {
    removed: false, logIndex: '0x0', transactionIndex: '0x0', transactionHash: '0x' + '1'.repeat(64),
    blockHash: '0x' + '2'.repeat(64), blockNumber: '0x1', address: '0x' + '3'.repeat(40), data: '0x', topics: [],
  };
  assertShape(log, Log, 'a log');
  assert.throws(() => assertShape({ ...log, extra: 1 }, Log, 'log'), /extra: field not in the spec/);
  assert.throws(() => assertShape({ ...log, logIndex: '0x00' }, Log, 'log'), /logIndex/);
  const { blockHash, ...noHash } = log;
  assert.ok(blockHash);
  assert.throws(() => assertShape(noHash, Log, 'log'), /blockHash: required field missing/);
  const receipt = {
    type: '0x2', status: '0x1', cumulativeGasUsed: '0x5208', gasUsed: '0x5208', logs: [log], logsBloom: '0x' + '0'.repeat(512),
    transactionHash: '0x' + '1'.repeat(64), transactionIndex: '0x0', blockHash: '0x' + '2'.repeat(64), blockNumber: '0x1',
    effectiveGasPrice: '0x0', from: '0x' + '3'.repeat(40), to: null, contractAddress: '0x' + '4'.repeat(40),
  };
  assertShape(receipt, Receipt, 'a receipt');
  assert.throws(() => assertShape({ ...receipt, to: undefined }, Receipt, 'r'), /to/);
  assert.throws(() => assertShape({ ...receipt, logs: [{ ...log, topics: ['0x1'] }] }, Receipt, 'r'), /topics\[0\]/);
});

let node;
let provider;
before(async () => {
  node = await startDevNode(['--period', '1']);
  provider = new ethers.JsonRpcProvider(node.url, undefined, { staticNetwork: true, pollingInterval: 200 });
});
after(async () => {
  provider?.destroy();
  await node?.stop();
});

async function rpc(method, params = []) {
  const res = await fetch(node.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

async function waitReceipt(hash) {
  for (let i = 0; i < 150; i++) {
    const r = await rpc('eth_getTransactionReceipt', [hash]);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`no receipt for ${hash}`);
}

const hexQ = (n) => `0x${n.toString(16)}`;
const devWallet = (i) => ethers.HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${i}`);

test('transactions of types 0, 1, 2 and 4, waiting and included, and their receipts, blocks and logs', async () => {
  const wallet = devWallet(8);
  const factory = new ethers.ContractFactory(osaka.abi, osaka.bytecode, wallet.connect(provider));
  const deployed = await factory.deploy();
  await deployed.waitForDeployment();
  const contract = await deployed.getAddress();
  const iface = deployed.interface;

  const base = { chainId: 1337n, to: contract, gasLimit: 200_000n };
  let nonce = await provider.getTransactionCount(wallet.address, 'latest');
  const auth = await wallet.authorize({ address: contract, nonce: nonce + 5, chainId: 1337n });
  const kinds = [
    { type: 0, gasPrice: 0n },
    { type: 1, gasPrice: 7n, accessList: [{ address: contract, storageKeys: [ethers.zeroPadValue('0x01', 32)] }] },
    { type: 2, maxFeePerGas: 5n, maxPriorityFeePerGas: 1n },
    // The sender delegates its own account to the contract's code and calls itself.
    { type: 4, maxFeePerGas: 5n, maxPriorityFeePerGas: 1n, to: wallet.address, authorizationList: [auth] },
  ];
  const raws = [];
  for (const [i, k] of kinds.entries()) {
    raws.push(await wallet.signTransaction({ ...base, data: iface.encodeFunctionData('store', [BigInt(i + 1)]), ...k, nonce: nonce + 1 + i }));
  }
  // Everything waits behind a nonce gap, so each is seen in the pool first.
  const hashes = [];
  for (const [i, raw] of raws.entries()) {
    const hash = await rpc('eth_sendRawTransaction', [raw]);
    assertShape(hash, 'hash32', 'eth_sendRawTransaction');
    hashes.push(hash);
    const tx = await rpc('eth_getTransactionByHash', [hash]);
    const type = `0x${kinds[i].type}`;
    assertShape(tx, pendingTransaction(type), `waiting type ${type} transaction`);
    if (kinds[i].type >= 2) assert.equal(tx.gasPrice, tx.maxFeePerGas, 'a waiting EIP-1559 transaction shows gasPrice = maxFeePerGas');
  }
  // Fill the gap.
  hashes.unshift(await rpc('eth_sendRawTransaction', [await wallet.signTransaction({ ...base, type: 2, maxFeePerGas: 0n, maxPriorityFeePerGas: 0n, nonce, data: iface.encodeFunctionData('store', [0n]) })]));
  const receipts = [];
  for (const h of hashes) receipts.push(await waitReceipt(h));

  const blockHashes = new Set();
  for (const [i, hash] of hashes.entries()) {
    const receipt = receipts[i];
    assertShape(receipt, Receipt, `receipt ${i}`);
    assert.equal(receipt.status, '0x1', `transaction ${i} succeeded`);
    assert.equal(receipt.effectiveGasPrice, '0x0');
    const tx = await rpc('eth_getTransactionByHash', [hash]);
    assertShape(tx, transactionInfo(tx.type), `included type ${tx.type} transaction`);
    assert.equal(tx.blockHash, receipt.blockHash);
    assert.equal(tx.transactionIndex, receipt.transactionIndex);
    if (tx.type === '0x2' || tx.type === '0x4') assert.equal(tx.gasPrice, '0x0', 'an included one shows the price paid');
    const byIndex = await rpc('eth_getTransactionByBlockHashAndIndex', [receipt.blockHash, receipt.transactionIndex]);
    assert.deepEqual(byIndex, tx);
    blockHashes.add(receipt.blockHash);
  }
  assert.deepEqual(receipts.map((r) => r.type), ['0x2', '0x0', '0x1', '0x2', '0x4']);
  for (const receipt of receipts) {
    assert.equal(receipt.logs.length, 1, 'Stored was emitted');
    assertShape(receipt.logs[0], Log, 'receipt log');
  }

  for (const h of blockHashes) {
    for (const full of [false, true]) {
      const b = await rpc('eth_getBlockByHash', [h, full]);
      assertShape(b, block(full), `eth_getBlockByHash(${full})`);
      assert.equal(b.baseFeePerGas, '0x0');
      const byNumber = await rpc('eth_getBlockByNumber', [b.number, full]);
      assert.deepEqual(byNumber, b);
    }
    const all = await rpc('eth_getBlockReceipts', [h]);
    all.forEach((r, i) => assertShape(r, Receipt, `eth_getBlockReceipts[${i}]`));
  }
  const logs = await rpc('eth_getLogs', [{ fromBlock: '0x0', toBlock: 'latest', address: contract }]);
  logs.forEach((l, i) => assertShape(l, Log, `eth_getLogs[${i}]`));
  const values = (ls) => ls.map((l) => ethers.AbiCoder.defaultAbiCoder().decode(['uint256', 'uint256'], l.data)[0]);
  assert.deepEqual(values(logs), [0n, 1n, 2n, 3n], 'the deployment emits nothing; four stores');
  const delegated = await rpc('eth_getLogs', [{ fromBlock: '0x0', toBlock: 'latest', address: wallet.address }]);
  assert.deepEqual(values(delegated), [4n], 'the EIP-7702 call ran the contract code in the sender account');
  assert.equal(await rpc('eth_getCode', [wallet.address, 'latest']), `0xef0100${contract.slice(2).toLowerCase()}`);
});

test('null for unknown objects, fee history, and the scalar answers', async () => {
  const unknown = '0x' + 'ab'.repeat(32);
  assert.equal(await rpc('eth_getTransactionByHash', [unknown]), null);
  assert.equal(await rpc('eth_getTransactionReceipt', [unknown]), null);
  assert.equal(await rpc('eth_getBlockByHash', [unknown, false]), null);
  assert.equal(await rpc('eth_getBlockByNumber', ['0xffffffff', false]), null);
  assert.equal(await rpc('eth_getTransactionByBlockNumberAndIndex', ['0x0', '0x5']), null);

  let latest = BigInt(await rpc('eth_blockNumber'));
  for (let i = 0; latest < 4n && i < 100; i++) {
    await new Promise((res) => setTimeout(res, 100));
    latest = BigInt(await rpc('eth_blockNumber'));
  }
  assert.ok(latest >= 4n, 'one block a second');
  const history = await rpc('eth_feeHistory', ['0x4', hexQ(latest), [25, 75]]);
  assertShape(history, FeeHistory, 'eth_feeHistory');
  assert.equal(history.oldestBlock, hexQ(latest - 3n));
  assert.equal(history.gasUsedRatio.length, 4);
  assert.equal(history.baseFeePerGas.length, 5, 'four blocks and the next');
  assert.ok(history.baseFeePerGas.every((f) => f === '0x0'));
  assert.deepEqual(history.reward, Array(4).fill(['0x0', '0x0']));
  for (const m of ['eth_gasPrice', 'eth_maxPriorityFeePerGas', 'eth_blockNumber', 'eth_chainId']) {
    assertShape(await rpc(m), 'uint', m);
  }
  assertShape(await rpc('eth_getBalance', [devWallet(0).address, 'latest']), 'uint', 'eth_getBalance');
  assertShape(await rpc('eth_getCode', [devWallet(0).address, 'latest']), 'bytes', 'eth_getCode');
  assertShape(await rpc('eth_getStorageAt', [devWallet(0).address, '0x0', 'latest']), 'bytes', 'eth_getStorageAt');
  assert.equal(await rpc('eth_syncing'), false);
});

test('eth_sendTransaction signs the type the request asks for, and refuses conflicting fields', async () => {
  const from = devWallet(9).address;
  const to = ethers.Wallet.createRandom().address;
  const cases = [
    [{}, '0x2'],
    [{ gasPrice: '0x3' }, '0x0'],
    [{ gasPrice: '0x0', accessList: [] }, '0x1'],
    [{ maxFeePerGas: '0x5', maxPriorityFeePerGas: '0x1' }, '0x2'],
    [{ type: '0x0' }, '0x0'],
    [{ type: '0x1' }, '0x1'],
  ];
  const hashes = [];
  for (const [fields, type] of cases) {
    const hash = await rpc('eth_sendTransaction', [{ from, to, value: '0x1', ...fields }]);
    hashes.push([hash, type, fields]);
  }
  for (const [hash, type, fields] of hashes) {
    const receipt = await waitReceipt(hash);
    assert.equal(receipt.status, '0x1');
    assert.equal(receipt.effectiveGasPrice, '0x0');
    const tx = await rpc('eth_getTransactionByHash', [hash]);
    assert.equal(tx.type, type, `${JSON.stringify(fields)} → type ${type}`);
    assertShape(tx, transactionInfo(type), `type ${type} from eth_sendTransaction`);
    if (fields.gasPrice) assert.equal(tx.gasPrice, fields.gasPrice, 'the requested gas price is signed');
    if (fields.maxFeePerGas) assert.equal(tx.maxFeePerGas, fields.maxFeePerGas);
  }
  for (const bad of [{ gasPrice: '0x1', maxFeePerGas: '0x1' }, { type: '0x2', gasPrice: '0x1' }, { type: '0x0', accessList: [] }]) {
    await assert.rejects(rpc('eth_sendTransaction', [{ from, to, ...bad }]), /-32602/, JSON.stringify(bad));
  }
  assert.equal(await rpc('eth_getBalance', [to, 'latest']), '0x6');
});
