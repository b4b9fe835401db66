// Zero fees as ethers v6 and viem see them: an account with no ether transacts with each
// client's default fee logic, and nothing is charged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ethers } from 'ethers';
import { createPublicClient, createWalletClient, http, defineChain } from 'viem';
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts';
import { startDevNode } from './node.mjs';

let node;
before(async () => {
  node = await startDevNode(['--period', '1']);
});
after(async () => {
  await node?.stop();
});

test('ethers v6 sends a legacy transaction with gasPrice 0 from an unfunded account', async () => {
  const provider = new ethers.JsonRpcProvider(node.url, undefined, { staticNetwork: true, polling: true, pollingInterval: 200 });
  const wallet = ethers.Wallet.createRandom().connect(provider);
  assert.equal(await provider.getBalance(wallet.address), 0n);
  const tx = await wallet.sendTransaction({ to: '0x00000000000000000000000000000000000000a1', value: 0n });
  assert.equal(tx.type, 0, 'a zero base fee makes ethers fall back to legacy');
  assert.equal(tx.gasPrice, 0n);
  const receipt = await tx.wait();
  assert.equal(receipt.status, 1);
  assert.equal(receipt.gasPrice, 0n);
  assert.equal(await provider.getBalance(wallet.address), 0n);
  provider.destroy();
});

test('viem sends an EIP-1559 transaction from an unfunded account', async () => {
  const chainId = Number(await (await fetch(node.url, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId' }),
  })).json().then((r) => r.result));
  const chain = defineChain({ id: chainId, name: 'p2pe-dev', nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [node.url] } } });
  const account = privateKeyToAccount(generatePrivateKey());
  const publicClient = createPublicClient({ chain, transport: http(node.url), pollingInterval: 200 });
  const walletClient = createWalletClient({ account, chain, transport: http(node.url) });
  const hash = await walletClient.sendTransaction({ to: '0x00000000000000000000000000000000000000a2', value: 0n });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, 'success');
  assert.equal(receipt.type, 'eip1559');
  assert.equal(receipt.effectiveGasPrice, 0n);
  assert.equal(await publicClient.getBalance({ address: account.address }), 0n);
});
