// viem against a real dev node (issue 3 item 8): deploy, read and write with EIP-1559 (its
// default when blocks carry baseFeePerGas) and legacy transactions, waitForTransactionReceipt,
// a custom error decoded from a revert, events through watchContractEvent on a webSocket
// transport (eth_subscribe), and JSON-RPC batches from the http transport's batch option.
// Balances change by the value only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  decodeErrorResult,
  defineChain,
  http,
  webSocket,
} from 'viem';
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount } from 'viem/accounts';
import { startDevNode, DEV_MNEMONIC } from './node.mjs';

const osaka = JSON.parse(readFileSync(new URL('./fixtures/Osaka.json', import.meta.url), 'utf8'));
const { abi, bytecode } = osaka;

let node;
let chain;
let publicClient;
/** Bodies of every HTTP request the batching transport made. */
const posted = [];
before(async () => {
  node = await startDevNode(['--period', '1']);
  chain = defineChain({
    id: 1337,
    name: 'p2pe dev',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [node.url], webSocket: [node.wsUrl] } },
  });
  publicClient = createPublicClient({
    chain,
    pollingInterval: 200,
    transport: http(node.url, { batch: true, onFetchRequest: (_req, init) => void posted.push(JSON.parse(init.body)) }),
  });
});
after(async () => {
  await node?.stop();
});

const devAccount = (i) => mnemonicToAccount(DEV_MNEMONIC, { addressIndex: i });
const wallet = (account) => createWalletClient({ account, chain, transport: http(node.url) });

async function deploy(account, extra = {}) {
  const hash = await wallet(account).deployContract({ abi, bytecode, ...extra });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, 'success');
  assert.ok(receipt.contractAddress);
  return { address: receipt.contractAddress, receipt };
}

test('viem: deploy, read and write with EIP-1559 and legacy transactions; waitForTransactionReceipt', async () => {
  const account = devAccount(1);
  const client = wallet(account);
  const start = await publicClient.getBalance({ address: account.address });

  const { address, receipt: deployed } = await deploy(account);
  assert.equal(deployed.type, 'eip1559', 'baseFeePerGas in the block makes viem choose EIP-1559');
  assert.equal(deployed.effectiveGasPrice, 0n);
  assert.equal(await publicClient.readContract({ address, abi, functionName: 'stored' }), 0n);
  assert.equal(await publicClient.readContract({ address, abi, functionName: 'leadingZeros', args: [1n] }), 255n);

  const h1 = await client.writeContract({ address, abi, functionName: 'store', args: [31n] });
  const r1 = await publicClient.waitForTransactionReceipt({ hash: h1 });
  assert.equal(r1.status, 'success');
  assert.equal(r1.type, 'eip1559');
  const tx1 = await publicClient.getTransaction({ hash: h1 });
  assert.equal(tx1.maxFeePerGas, 0n, 'baseFee 0 × 1.2 + tip 0 (eth_maxPriorityFeePerGas)');

  const h2 = await client.writeContract({ address, abi, functionName: 'store', args: [32n], type: 'legacy' });
  const r2 = await publicClient.waitForTransactionReceipt({ hash: h2 });
  assert.equal(r2.status, 'success');
  assert.equal(r2.type, 'legacy');
  assert.equal((await publicClient.getTransaction({ hash: h2 })).gasPrice, 0n, 'priced by eth_gasPrice');
  assert.equal(await publicClient.readContract({ address, abi, functionName: 'stored' }), 32n);
  const [log] = await publicClient.getContractEvents({ address, abi, eventName: 'Stored', fromBlock: r2.blockNumber, toBlock: r2.blockNumber });
  assert.deepEqual(log.args, { by: account.address, value: 32n, leadingZeros: 250n });

  // Value transfers of both types, one with fees a user set: only the values move.
  const to = privateKeyToAccount(generatePrivateKey()).address;
  const t1 = await client.sendTransaction({ to, value: 1000n });
  const t2 = await client.sendTransaction({ to, value: 2000n, type: 'legacy', gasPrice: 10n ** 9n });
  const t3 = await client.sendTransaction({ to, value: 3000n, maxFeePerGas: 2n * 10n ** 9n, maxPriorityFeePerGas: 10n ** 9n });
  for (const hash of [t1, t2, t3]) assert.equal((await publicClient.waitForTransactionReceipt({ hash })).status, 'success');
  assert.equal(await publicClient.getBalance({ address: to }), 6000n);
  assert.equal(await publicClient.getBalance({ address: account.address }), start - 6000n, 'only the values left the sender');

  // Deploying and writing from an account with no ether, both types.
  const poor = privateKeyToAccount(generatePrivateKey());
  const { address: poorContract } = await deploy(poor, { type: 'legacy' });
  const h3 = await wallet(poor).writeContract({ address: poorContract, abi, functionName: 'store', args: [7n] });
  assert.equal((await publicClient.waitForTransactionReceipt({ hash: h3 })).status, 'success');
  assert.equal(await publicClient.getBalance({ address: poor.address }), 0n);
});

test('viem: a custom error is decoded from the revert data (TooBig)', async () => {
  const account = devAccount(2);
  const { address } = await deploy(account);
  const big = 10n ** 31n;
  const expectTooBig = (e) => {
    assert.ok(e instanceof BaseError, String(e));
    const revert = e.walk((x) => x instanceof ContractFunctionRevertedError);
    assert.ok(revert, `a revert with data: ${e.message}`);
    assert.equal(revert.data?.errorName, 'TooBig', e.message);
    assert.deepEqual(revert.data.args, [big, 10n ** 30n]);
    return true;
  };
  // eth_call (simulateContract) and eth_estimateGas (writeContract) both report the revert data.
  await assert.rejects(publicClient.simulateContract({ account, address, abi, functionName: 'store', args: [big] }), expectTooBig);
  await assert.rejects(wallet(account).writeContract({ address, abi, functionName: 'store', args: [big] }), expectTooBig);
  // The raw error data as the node returns it (code 3, data = selector ‖ args).
  const res = await fetch(node.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'eth_call',
      params: [{ to: address, data: `0x6057361d${big.toString(16).padStart(64, '0')}` }, 'latest'],
    }),
  }).then((r) => r.json());
  assert.equal(res.error.code, 3);
  assert.deepEqual(decodeErrorResult({ abi, data: res.error.data }), { abiItem: abi.find((x) => x.name === 'TooBig'), args: [big, 10n ** 30n], errorName: 'TooBig' });
});

test('viem: watchContractEvent over a WebSocket transport', async () => {
  const account = devAccount(3);
  const { address } = await deploy(account);
  const wsClient = createPublicClient({ chain, transport: webSocket(node.wsUrl) });
  // The socket client viem shares per URL: note when the node confirms eth_subscribe, so the
  // transactions go out only once the subscription is in place.
  const socket = await wsClient.transport.getRpcClient();
  let subscribed;
  const confirmed = new Promise((resolve) => (subscribed = resolve));
  const request = socket.request.bind(socket);
  socket.request = (args) =>
    request(
      args.body.method !== 'eth_subscribe'
        ? args
        : { ...args, onResponse: (r) => (args.onResponse(r), typeof r.id === 'number' && subscribed(r)) },
    );
  const logs = [];
  let unwatch;
  try {
    const got = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`logs seen: ${logs.length}`)), 30_000);
      unwatch = wsClient.watchContractEvent({
        address,
        abi,
        eventName: 'Stored',
        onLogs: (batch) => {
          logs.push(...batch);
          if (logs.length >= 2) {
            clearTimeout(timer);
            resolve();
          }
        },
        onError: reject,
      });
    });
    const answer = await confirmed;
    assert.match(answer.result, /^0x[0-9a-f]+$/, 'a subscription id');
    const client = wallet(account);
    const a = await client.writeContract({ address, abi, functionName: 'store', args: [3n] });
    await publicClient.waitForTransactionReceipt({ hash: a });
    const b = await client.writeContract({ address, abi, functionName: 'store', args: [4n] });
    await publicClient.waitForTransactionReceipt({ hash: b });
    await got;
    assert.deepEqual(logs.map((l) => [l.transactionHash, l.args.value, l.args.by]), [
      [a, 3n, account.address],
      [b, 4n, account.address],
    ]);
    assert.ok(logs.every((l) => l.removed === false && typeof l.logIndex === 'number'));
  } finally {
    unwatch?.();
    socket.close();
  }
});

test('viem: the http batch option sends one JSON-RPC batch and each answer matches its request', async () => {
  const accounts = [0, 1, 2, 3, 4].map((i) => devAccount(i).address);
  const before = posted.length;
  const [balances, number, chainId] = await Promise.all([
    Promise.all(accounts.map((address) => publicClient.getBalance({ address }))),
    publicClient.getBlockNumber({ cacheTime: 0 }),
    publicClient.getChainId(),
  ]);
  const batches = posted.slice(before).filter(Array.isArray);
  assert.ok(batches.some((b) => b.filter((r) => r.method === 'eth_getBalance').length === 5), JSON.stringify(posted.slice(before)));
  assert.equal(chainId, 1337);
  assert.ok(number > 0n);
  const single = createPublicClient({ chain, transport: http(node.url) });
  for (const [i, address] of accounts.entries()) {
    assert.equal(balances[i], await single.getBalance({ address }), `balance of ${address}`);
  }
});
