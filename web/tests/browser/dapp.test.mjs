// The trading dApp in a real browser (Debian's Chromium, headless, driven by playwright-core)
// against a real `p2pe-node dev --slot-length 10` that serves the page. A test wallet injected into
// the page (EIP-6963 + EIP-1193) signs with the dev mnemonic's keys, so the page takes the path it
// takes with MetaMask. One slot is played end to end: orders, cancel, clearing, meter readings,
// settlement and bills. Screenshots go to tests/artifacts/web/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAbi } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { launchChromium, sendFromKey, waitForWith } from './kit.mjs';
import { root, startDevNode } from './node.mjs';
import { TestWallet, devAccount, keyClient } from './wallet.mjs';

const SHOTS = path.join(root, 'tests', 'artifacts', 'web');
const abi = (name) => JSON.parse(readFileSync(path.join(root, 'bindings', 'artifacts', `${name}.json`), 'utf8')).abi;
const marketAbi = abi('EnergyMarket');
const readingsAbi = abi('MeterReadings');
const tokenAbi = parseAbi(['function approve(address,uint256) returns (bool)']);
const milli = 10n ** 15n;
const short = (a) => `${a.slice(0, 6)}…${a.slice(-4)}`;

let node;
let context;
let page;
let wallet;
let contracts;
let browser; // launchChromium's { context, close }
let T; // the slot played end to end
let C; // the slot of the cancelled order

const waitFor = waitForWith(() => page);

const textOf = (sel) => page.locator(sel).first().innerText({ timeout: 2_000 });
async function waitText(sel, re, timeout = 30_000) {
  return waitFor(async () => re.test(await textOf(sel)), `${sel} to show ${re}`, timeout);
}
async function idle() {
  await waitFor(async () => (await page.locator('[data-testid=busy]').count()) === 0, 'the page to finish its action', 60_000);
}
async function notice(re, timeout = 30_000) {
  await waitText('[data-testid=notices]', re, timeout);
}
async function shot(name, fullPage = true) {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage });
}

async function fillOrder({ side, slot, energy, price }) {
  await page.locator('[data-testid=order-form] .segmented label', { hasText: side === 'bid' ? 'Buy' : 'Sell' }).click();
  await waitFor(
    async () => (await page.locator('[data-testid=order-slot] option').evaluateAll((os, s) => os.some((o) => o.value === s), String(slot))),
    `slot ${slot} in the order form`,
  );
  await page.selectOption('[data-testid=order-slot]', String(slot));
  await page.fill('[data-testid=order-energy]', String(energy));
  await page.fill('[data-testid=order-price]', price);
}

async function placeOrder(order) {
  await fillOrder(order);
  await page.click('[data-testid=place-order]');
}

const ownOrder = (slot, side) => page.locator(`[data-testid=own-order][data-slot="${slot}"][data-side="${side}"]`);
const slotRow = (slot) => page.locator(`[data-testid=slot-row][data-slot="${slot}"]`);

/** Waits until the node's keeper has opened `slot` (only the operator opens slots) and the page shows it open. */
async function waitSlotOpen(slot) {
  const { public: p } = keyClient(node.url, contracts.chainId, 0);
  await waitFor(
    async () => (await p.readContract({ address: contracts.market, abi: marketAbi, functionName: 'slotInfo', args: [slot] })).status === 1,
    `the keeper to open slot ${slot}`,
    60_000,
  );
  await waitFor(
    async () => (await page.locator(`[data-testid=slot-row][data-slot="${slot}"][data-status=open]`).count()) > 0,
    `the page to show slot ${slot} open`,
  );
}

const sendFrom = (index, address, abiItems, functionName, args) =>
  sendFromKey(node.url, contracts.chainId, index, address, abiItems, functionName, args);

describe('trading dApp in Chromium', { timeout: 600_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    node = await startDevNode(['--slot-length', '10']);
    contracts = await fetch(`${node.url}/contracts.json`).then((r) => r.json());
    assert.equal(contracts.slotLength, 10);
    browser = await launchChromium();
    context = browser.context;
    page = await context.newPage();
    page.on('pageerror', (e) => console.error('[page error]', e));
    wallet = new TestWallet({ accounts: [0, 1], chainId: 1 });
    await wallet.install(page);
  });

  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  it('serves the page and contracts.json from the node, next to JSON-RPC', async () => {
    const res = await fetch(`${node.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/html/);
    assert.match(res.headers.get('content-security-policy'), /default-src 'self'/);
    const html = await res.text();
    assert.match(html, /\/assets\/app\.js/);
    const js = await fetch(`${node.url}/assets/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /javascript/);
    const served = Buffer.from(await js.clone().arrayBuffer());
    assert.ok(
      served.equals(readFileSync(path.join(root, 'web', 'dist', 'assets', 'app.js'))),
      'the node serves another app.js than web/dist/: rebuild it (cargo build -p p2pe-node) after npm run build',
    );
    const etag = js.headers.get('etag');
    assert.ok(etag);
    assert.equal((await fetch(`${node.url}/assets/app.js`, { headers: { 'if-none-match': etag } })).status, 304);
    assert.equal((await fetch(`${node.url}/nope`)).status, 404);
    const rpc = await fetch(node.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
    }).then((r) => r.json());
    assert.equal(rpc.result, '0x539');
    assert.equal(contracts.market.toLowerCase(), '0x24B5F01F29f1fF36C33a5E03e7D1DE924262E9fa'.toLowerCase());
    assert.equal(contracts.chainId, 1337);
  });

  it('discovers the wallet through EIP-6963, reports a rejected connection, then connects on the wrong network', async () => {
    await page.goto(node.url);
    await waitText('[data-testid=chain-status]', /block #\d+/);
    await waitText('[data-testid=chain-status]', /live/);
    await waitText('[data-testid=connect]', /Connect Test Wallet/);
    wallet.reject('connect');
    await page.click('[data-testid=connect]');
    await waitText('[data-testid=wallet-problem]', /You rejected the connection request in your wallet/);
    await page.click('[data-testid=connect]');
    await waitText('[data-testid=account]', new RegExp(short(devAccount(0).address).replace('…', '.')));
    await waitText(
      '[data-testid=wallet-problem]',
      /Wrong network: your wallet is on chain 1, but this market runs on chain 1337/,
    );
    assert.equal(await page.locator('[data-testid=place-order]').isDisabled(), true);
    await waitText('[data-testid=registration]', /Prosumer/); // reads go to the node, whatever the wallet's network
    await shot('wrong-network.png', false);
  });

  it('adds the network with the chain’s parameters (RPC URL = the page’s origin) and switches to it', async () => {
    await page.click('[data-testid=switch-network]');
    await waitFor(async () => (await page.locator('[data-testid=wallet-problem]').count()) === 0, 'the network warning to go');
    assert.equal(wallet.chainId, 1337);
    assert.deepEqual(wallet.addedChains[0], {
      chainId: '0x539',
      chainName: 'P2P Energy (chain 1337)',
      nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
      rpcUrls: [node.url],
    });
    await page.click('[data-testid=add-network]');
    // The notice may still be up from the switch above: wait for the wallet's second request itself.
    await waitFor(async () => wallet.addedChains.length === 2, 'the wallet to be asked to add the network again');
    await notice(/Your wallet is on P2P Energy \(chain 1337\)/);
    assert.equal(wallet.addedChains.length, 2);
  });

  it('shows registration, meter and balances of the account', async () => {
    await waitText('[data-testid=registration]', /Prosumer/);
    await waitText('[data-testid=meter]', new RegExp(short(devAccount(100).address).replace('…', '.')));
    await waitText('[data-testid=wallet-credits]', /1,000\.000000 credits/);
    await waitText('[data-testid=market-balance]', /0\.000000 credits/);
    await waitText('[data-testid=tab-operator]', /Operator/);
  });

  it('places an ask, depositing the collateral with an EIP-2612 permit', async () => {
    const first = await page.locator('[data-testid=order-slot] option').first().getAttribute('value');
    T = BigInt(first) + 5n;
    // The cancelled order's slot: after T, so that its gate is still open when the cancel test runs on a
    // loaded machine (the tests between take a minute or more there).
    C = T + 1n;
    await waitSlotOpen(T);
    await fillOrder({ side: 'ask', slot: T, energy: 400, price: '0.100' });
    // Worst case (issue 14): none of the 400 Wh delivered, bought at retail 0.300 + premium 0.050,
    // at least 0.100 earned: 400 Wh × 0.250 = 0.100000 credits.
    await waitText('[data-testid=order-summary]', /Locks 0\.100000 credits until settlement/);
    await waitText('[data-testid=order-summary]', /0\.100000 credits will be deposited from your\s+wallet first/);

    await page.click('[data-testid=place-order]');
    await notice(/Ask 400 Wh at 0\.100 credits\/kWh in slot \d+: placed\. 0\.100000 credits locked/, 45_000);
    await idle();
    const typed = wallet.requests.filter((r) => r.method === 'eth_signTypedData_v4');
    assert.equal(typed.length, 1);
    const permit = JSON.parse(typed[0].params[1]);
    assert.equal(permit.primaryType, 'Permit');
    assert.equal(permit.domain.verifyingContract.toLowerCase(), contracts.token.toLowerCase());
    assert.equal(permit.message.spender.toLowerCase(), contracts.market.toLowerCase());
    assert.equal(BigInt(permit.message.value), 100n * milli);
    const txs = wallet.requests.filter((r) => r.method === 'eth_sendTransaction').map((r) => r.params[0]);
    assert.equal(txs.length, 2); // depositWithPermit + placeAsk
    for (const tx of txs) {
      // The page suggests the chain's zero fees, so no wallet asks an account for ether.
      assert.equal(tx.maxFeePerGas, '0x0');
      assert.equal(tx.maxPriorityFeePerGas, '0x0');
      assert.equal(tx.to.toLowerCase(), contracts.market.toLowerCase());
    }
    await ownOrder(T, 'ask').waitFor();
    await waitText('[data-testid=book-asks]', /0\.100\s+400 Wh/);
    await waitText('[data-testid=market-balance]', /0\.100000 credits locked in orders/);
  });

  it('reports a rejected permit signature and sends nothing', async () => {
    wallet.reject('sign');
    const sent = wallet.count('eth_sendTransaction');
    await placeOrder({ side: 'bid', slot: T, energy: 100, price: '0.200' });
    await notice(/You declined to sign the permit\. Nothing was deposited\./);
    await idle();
    assert.equal(wallet.count('eth_sendTransaction'), sent);
    assert.equal(await ownOrder(T, 'bid').count(), 0);
  });

  it('follows an account change in the wallet', async () => {
    await wallet.switchAccount(1);
    await waitText('[data-testid=account]', new RegExp(short(devAccount(1).address).replace('…', '.')));
    await notice(/Switched to account/);
    await waitText('[data-testid=registration]', /Consumer/);
    await waitFor(() => page.locator('[data-testid=side-ask]').isDisabled(), 'selling to be disabled for a consumer');
    assert.equal(await page.locator('[data-testid=tab-operator]').count(), 0);
  });

  it('places a bid; the aggregated book and the indicative price update', async () => {
    await placeOrder({ side: 'bid', slot: T, energy: 500, price: '0.200' });
    await notice(/Bid 500 Wh at 0\.200 credits\/kWh in slot \d+: placed/, 45_000);
    await idle();
    await ownOrder(T, 'bid').waitFor();
    await waitText('[data-testid=book-bids]', /0\.200\s+500 Wh/);
    // The bid level is rationed (500 Wh bid, 400 Wh offered): its unfilled volume pins the price to 0.200.
    await waitText('[data-testid=indicative]', /400 Wh would trade at\s+0\.200 credits\/kWh/);
    // A second bid in the same slot is refused before anything is signed, with the contract's sentence.
    const sent = wallet.count('eth_sendTransaction');
    await placeOrder({ side: 'bid', slot: T, energy: 100, price: '0.200' });
    await notice(new RegExp(`There is already a bid in slot ${T}\\. Cancel it first`));
    assert.equal(wallet.count('eth_sendTransaction'), sent);
  });

  it('updates live when others trade and meters report (no reload)', async () => {
    // Account 2 (a prosumer) offers 200 Wh at 0.120 from outside the page.
    await sendFrom(2, contracts.token, tokenAbi, 'approve', [contracts.market, 10n ** 18n]);
    await sendFrom(2, contracts.market, marketAbi, 'deposit', [10n ** 17n]);
    await sendFrom(2, contracts.market, marketAbi, 'placeAsk', [T, 200, 120n * milli]);
    await waitText('[data-testid=book-asks]', /0\.120\s+200 Wh\s+600 Wh/);
    // Now the ask level 0.120 is rationed (100 of its 200 Wh trade): the price is 0.120.
    await waitText('[data-testid=indicative]', /500 Wh would trade at\s+0\.120 credits\/kWh/);
    // Meter readings for slot T: one at its start (which fixes the boundary; MeterReadings interpolates
    // a boundary between the readings that bracket it), one inside it.
    const start = BigInt(contracts.startTime) + T * 10n;
    const meter0 = contracts.readings;
    await sendFrom(101, meter0, readingsAbi, 'submitReading', [1000n, 0n, start]);
    await sendFrom(101, meter0, readingsAbi, 'submitReading', [1450n, 0n, start + 5n]);
    await sendFrom(100, meter0, readingsAbi, 'submitReading', [0n, 5000n, start]);
    await sendFrom(100, meter0, readingsAbi, 'submitReading', [0n, 5350n, start + 5n]);
    await waitText('[data-testid=meter]', /in 1,450 Wh, out 0 Wh/);
    await shot('trade.png');
  });

  it('cancels an order before gate closure (after a rejected transaction)', async () => {
    await waitSlotOpen(C);
    await placeOrder({ side: 'bid', slot: C, energy: 100, price: '0.150' });
    await notice(/Bid 100 Wh at 0\.150 credits\/kWh in slot \d+: placed/, 45_000);
    await idle();
    await ownOrder(C, 'bid').waitFor();
    const sent = wallet.count('eth_sendTransaction');
    wallet.reject('tx');
    await ownOrder(C, 'bid').locator('[data-testid=cancel]').click();
    await notice(/you rejected the transaction in your wallet\. Nothing was sent\./);
    await idle();
    assert.equal(await ownOrder(C, 'bid').count(), 1);
    await ownOrder(C, 'bid').locator('[data-testid=cancel]').click();
    await notice(new RegExp(`Cancel bid in slot ${C}: done`));
    await idle();
    await waitFor(async () => (await ownOrder(C, 'bid').count()) === 0, 'the cancelled order to disappear');
    assert.equal(wallet.count('eth_sendTransaction'), sent + 2); // the rejected one never left the wallet
    await waitText('[data-testid=market-balance]', /0\.020000 credits/); // 100 Wh × (0.150 + 0.050 penalty) refunded
  });

  it('decodes a custom error from the market into a sentence', async () => {
    await page.fill('[data-testid=withdraw-form] input', '5');
    await page.click('[data-testid=withdraw-form] button');
    await notice(/Not enough free credits in the market account: this needs 5\.000000 credits, but your account has 0\.020000 credits free/);
    await page.fill('[data-testid=withdraw-form] input', '0.01');
    await page.click('[data-testid=withdraw-form] button');
    await notice(/Withdraw 0\.010000 credits: done/);
    await waitText('[data-testid=market-balance]', /0\.010000 credits/);
    // 1,000 − 0.125 (500 Wh × (0.200 + 0.050)) − 0.02 deposited + 0.01
    await waitText('[data-testid=wallet-credits]', /999\.865000 credits/);
  });

  it('clears the slot after gate closure: price and volume', async () => {
    await waitFor(async () => (await slotRow(T).getAttribute('data-phase')) !== 'open', `slot ${T}'s gate to close`, 90_000);
    await slotRow(T).locator('[data-testid=clear]').click();
    await notice(new RegExp(`Clear slot ${T}: done`));
    await waitFor(async () => (await slotRow(T).getAttribute('data-status')) === 'cleared', 'the slot to show as cleared');
    await waitText(`[data-testid=slot-row][data-slot="${T}"] [data-testid=slot-result]`, /0\.120 credits\/kWh\s+500 Wh traded/);
    await waitText('[data-testid=own-orders]', /cleared · bought 500 Wh/);
  });

  it('settles the slot and shows the bill, traded vs delivered, and savings', async () => {
    await waitFor(async () => (await slotRow(T).locator('[data-testid=settle]').count()) === 1, 'settlement to open', 60_000);
    await slotRow(T).locator('[data-testid=settle]').click();
    await notice(new RegExp(`Settle slot ${T}: done`));
    // The other two sellers are settled by someone else (anyone may settle).
    await sendFrom(3, contracts.market, marketAbi, 'settle', [T, [devAccount(0).address, devAccount(2).address]]);
    await page.click('[data-testid=tab-history]');
    const row = `[data-testid=settlement-row][data-slot="${T}"]`;
    await waitFor(() => page.locator(row).count(), 'the settlement row');
    const text = await textOf(row);
    // Bought 500 Wh at 0.120, used 450 Wh: 50 Wh back to the grid at 0.080 less the 0.050 imbalance penalty.
    assert.match(text, /500 Wh \/ 450 Wh/);
    assert.match(text, /0 Wh\s+50 Wh/);
    assert.match(await textOf(`${row} [data-testid=bill]`), /^0\.058500$/);
    assert.match(await textOf(`${row} [data-testid=savings]`), /^\+0\.076500$/);
    assert.match(text, /0\.135/); // grid only: 450 Wh at 0.300
    await waitText('[data-testid=total-savings]', /You saved\s+0\.076500 credits/i);
    await waitText('[data-testid=cleared-slots]', new RegExp(`#${T}\\s+\\S+\\s+0\\.120\\s+500 Wh`));
    assert.equal(await page.locator('[data-testid=chart-prices] circle').count() >= 1, true);
    assert.equal(await page.locator('[data-testid=chart-flows] rect').count() >= 2, true);
    assert.equal(await page.locator('[data-testid=chart-readings] circle').count(), 4);
    await shot('history.png');
    // The prosumer: sold 400 Wh at 0.120, delivered 350 Wh (50 Wh bought back at 0.300 + 0.050): earned
    // 0.0305; on grid tariffs alone 350 Wh at 0.080 would have earned 0.028.
    await wallet.switchAccount(0);
    await waitText('[data-testid=account]', new RegExp(short(devAccount(0).address).replace('…', '.')));
    await waitFor(() => page.locator(row).count(), 'the prosumer’s settlement row');
    const p = await textOf(row);
    assert.match(p, /400 Wh \/ 350 Wh/);
    assert.match(await textOf(`${row} [data-testid=bill]`), /^−0\.030500$/);
    assert.match(await textOf(`${row} [data-testid=savings]`), /^\+0\.002500$/);
  });

  it('bounds the order volume by the registered capacity, with a sentence (issue 14)', async () => {
    // Account 0, a prosumer: the dev chain registers a 25 kW connection per 15 minutes of trading, 6,250 Wh
    // per slot whatever the slot length.
    await page.click('[data-testid=tab-trade]');
    const slot = await page.locator('[data-testid=order-slot] option:not([disabled])').last().getAttribute('value');
    await fillOrder({ side: 'ask', slot: BigInt(slot), energy: 6250, price: '0.100' });
    await waitText('[data-testid=order-capacity]', /at most 6,250 Wh per slot/);
    await waitText('[data-testid=order-summary]', /Locks 1\.562500 credits until settlement/); // 6,250 Wh × 0.250
    await page.fill('[data-testid=order-energy]', '6251');
    await waitText('[data-testid=order-energy-error]', /At most 6,250 Wh per slot: your registered export power times the slot length/);
    assert.equal(await page.locator('[data-testid=place-order]').isDisabled(), true);
    await page.fill('[data-testid=order-energy]', '400');
  });

  it('lets an operator register, bind a meter, mint credits and look up the account; errors are sentences', async () => {
    await page.click('[data-testid=tab-operator]');
    const newcomer = privateKeyToAccount(`0x${'11'.repeat(32)}`).address;
    const meter = privateKeyToAccount(`0x${'22'.repeat(32)}`).address;
    const form = (id) => `[data-testid=${id}]`;
    await page.fill(`${form('op-register')} input[name=account]`, newcomer);
    await page.selectOption(`${form('op-register')} select[name=role]`, '1');
    await page.click(`${form('op-register')} button`);
    await notice(new RegExp(`Register ${short(newcomer).replace('…', '.')}: done`));
    await idle();
    await page.fill(`${form('op-register')} input[name=account]`, newcomer);
    await page.click(`${form('op-register')} button`);
    await notice(new RegExp(`Account ${short(newcomer).replace('…', '.')} is already registered\\.`));
    await page.fill(`${form('op-bind')} input[name=meter]`, meter);
    await page.fill(`${form('op-bind')} input[name=participant]`, newcomer);
    await page.click(`${form('op-bind')} button`);
    await notice(/Bind meter .*: done/);
    await idle();
    await page.fill(`${form('op-mint')} input[name=to]`, newcomer);
    await page.fill(`${form('op-mint')} input[name=amount]`, '5');
    await page.click(`${form('op-mint')} button`);
    await notice(/Mint 5\.000000 credits to .*: done/);
    await idle();
    await page.fill(`${form('op-lookup')} input[name=account]`, newcomer);
    await page.click(`${form('op-lookup')} button`);
    await waitText('[data-testid=lookup-result]', /consumer/);
    const lk = await textOf('[data-testid=lookup-result]');
    assert.match(lk, new RegExp(meter));
    assert.match(lk, /5\.000000 credits/);
    await page.fill(`${form('op-tariffs')} input[name=retail]`, '0.320');
    await page.fill(`${form('op-tariffs')} input[name=feedin]`, '0.070');
    await page.click(`${form('op-tariffs')} button`);
    await notice(/Set default tariffs: done/);
    await waitText('[data-testid=operator]', /retail 0\.320 credits\/kWh, feed-in\s+0\.070 credits\/kWh/);
    await shot('operator.png');
    // Time-of-use tariffs for a future slot, then unbind the meter and remove the participant.
    const future = String(T + 100n);
    await page.fill(`${form('op-slot-tariffs')} input[name=slot]`, future);
    await page.fill(`${form('op-slot-tariffs')} input[name=retail]`, '0.250');
    await page.fill(`${form('op-slot-tariffs')} input[name=feedin]`, '0.090');
    await page.click(`${form('op-slot-tariffs')} button`);
    await notice(new RegExp(`Set tariffs of slot ${future}: done`));
    await idle();
    await page.fill(`${form('op-unbind')} input[name=meter]`, meter);
    await page.click(`${form('op-unbind')} button`);
    await notice(/Unbind meter .*: done/);
    await idle();
    await page.fill(`${form('op-remove')} input[name=account]`, newcomer);
    await page.click(`${form('op-remove')} button`);
    await page.click('[data-testid=confirm-remove-yes]'); // Remove asks for confirmation first
    await notice(/Remove .*: done/);
    await idle();
    await page.fill(`${form('op-lookup')} input[name=account]`, newcomer);
    await page.click(`${form('op-lookup')} button`);
    await waitText('[data-testid=lookup-result]', /not registered/);
    assert.match(await textOf('[data-testid=lookup-result]'), /Meter\s+none/);
    const [retail, feedIn] = await keyClient(node.url, contracts.chainId, 0).public.readContract({
      address: contracts.registry,
      abi: parseAbi(['function slotPrices(uint64) view returns (uint256, uint256)']),
      functionName: 'slotPrices',
      args: [T + 100n],
    });
    assert.equal(retail, 250n * milli);
    assert.equal(feedIn, 90n * milli);
  });

  it('notices a network switch in the wallet and switches back', async () => {
    await page.click('[data-testid=tab-trade]');
    await wallet.switchChain(5);
    await waitText('[data-testid=wallet-problem]', /Wrong network: your wallet is on chain 5/);
    assert.equal(await page.locator('[data-testid=place-order]').isDisabled(), true);
    await page.click('[data-testid=switch-network]');
    await waitFor(async () => (await page.locator('[data-testid=wallet-problem]').count()) === 0, 'the warning to go');
    assert.equal(wallet.chainId, 1337);
    assert.equal(wallet.addedChains.length, 2); // known network: switched, not added again
  });

  it('fits a phone screen (390 px)', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('[data-testid=tab-trade]');
    await waitText('[data-testid=slots]', /Delivery slots/);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 392, `page is ${overflow} px wide at 390 px`);
    await shot('phone-trade.png');
    await page.click('[data-testid=tab-history]');
    await shot('phone-history.png');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('falls back to window.ethereum when no wallet announces itself (EIP-1193), and to approve + deposit without typed-data signing', async () => {
    const plain = await context.newPage();
    const w2 = new TestWallet({ accounts: [3], chainId: 1337 });
    w2.chains.set(1337, { rpcUrl: node.url, params: null });
    w2.unsupported.add('eth_signTypedData_v4');
    await w2.install(plain, { announce: false });
    await plain.goto(node.url);
    const wait = (sel, hasText) => plain.locator(sel, { hasText }).first().waitFor({ timeout: 30_000 });
    await wait('[data-testid=connect]', 'Connect Browser wallet');
    await plain.click('[data-testid=connect]');
    await wait('[data-testid=account]', short(devAccount(3).address));
    await wait('[data-testid=registration]', 'Consumer');
    await plain.fill('[data-testid=deposit-form] input', '2.5');
    await plain.click('[data-testid=deposit-form] button');
    await wait('[data-testid=notices]', 'Deposit 2.500000 credits: done');
    await wait('[data-testid=market-balance]', '2.500000 credits');
    await wait('[data-testid=wallet-credits]', '997.500000 credits');
    const txs = w2.requests.filter((r) => r.method === 'eth_sendTransaction');
    assert.equal(txs.length, 2); // approve, then deposit
    assert.equal(txs[0].params[0].to.toLowerCase(), contracts.token.toLowerCase());
    assert.equal(txs[1].params[0].to.toLowerCase(), contracts.market.toLowerCase());
    await plain.close();
  });
});
