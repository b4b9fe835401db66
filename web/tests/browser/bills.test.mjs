// Issue 18, items 5 and 8, in Chromium with the injected test wallet against a real
// `p2pe-node dev --slot-length 10`: a slot settled without meter readings is flagged before Settle
// and in the bill (and one with late readings too); the credits locked in an unmatched order are
// reclaimed in one action (checked against the chain), which is refused when there is nothing to
// reclaim; slots beyond the order horizon are not offered; every credit figure on the page has the
// same 6 decimals. Screenshots go to tests/artifacts/web/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BaseError, ContractFunctionRevertedError, parseAbi } from 'viem';
import { launchChromium, sendFromKey, waitForWith } from './kit.mjs';
import { root, startDevNode } from './node.mjs';
import { TestWallet, devAccount, keyClient } from './wallet.mjs';

const SHOTS = path.join(root, 'tests', 'artifacts', 'web');
const abi = (name) => JSON.parse(readFileSync(path.join(root, 'bindings', 'artifacts', `${name}.json`), 'utf8')).abi;
const marketAbi = abi('EnergyMarket');
const readingsAbi = abi('MeterReadings');
const registryAbi = abi('Registry');
const tokenAbi = parseAbi(['function approve(address,uint256) returns (bool)']);
const milli = 10n ** 15n;
const short = (a) => `${a.slice(0, 6)}…${a.slice(-4)}`;
/** A credit figure at the page's one precision: 6 decimals, thousands grouped, optional sign. */
const CREDIT_FIGURE = /^[+−-]?\d{1,3}(,\d{3})*\.\d{6}$/;

let node;
let context;
let page;
let wallet;
let contracts;
let browser; // launchChromium's { context, close }
let T; // slot with a matched trade and no readings for account 1 (late readings for account 0)
let U; // slot with account 1's unmatched bid

const waitFor = waitForWith(() => page);

const textOf = (sel) => page.locator(sel).first().innerText({ timeout: 2_000 });
const waitText = (sel, re, timeout = 30_000) => waitFor(async () => re.test(await textOf(sel)), `${sel} to show ${re}`, timeout);
const notice = (re, timeout = 30_000) => waitText('[data-testid=notices]', re, timeout);
const idle = () => waitFor(async () => (await page.locator('[data-testid=busy]').count()) === 0, 'the page to finish', 60_000);
const shot = (name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
const slotRow = (slot) => page.locator(`[data-testid=slot-row][data-slot="${slot}"]`);
const reader = () => keyClient(node.url, contracts.chainId, 0).public;
const read = (address, abiItems, functionName, args = []) => reader().readContract({ address, abi: abiItems, functionName, args });
const slotStart = (slot) => BigInt(contracts.startTime) + slot * BigInt(contracts.slotLength);
const chainNow = async () => (await reader().getBlock()).timestamp;

const sendFrom = (index, address, abiItems, functionName, args) =>
  sendFromKey(node.url, contracts.chainId, index, address, abiItems, functionName, args);

async function waitSlotOpen(slot, onPage = false) {
  await waitFor(async () => (await read(contracts.market, marketAbi, 'slotInfo', [slot])).status === 1, `the keeper to open slot ${slot}`, 60_000);
  if (onPage) {
    await waitFor(async () => (await page.locator(`[data-testid=slot-row][data-slot="${slot}"][data-status=open]`).count()) > 0, `the page to show slot ${slot} open`);
  }
}

async function placeBid(slot, energy, price) {
  await page.locator('[data-testid=order-form] .segmented label', { hasText: 'Buy' }).click();
  await waitFor(
    async () => page.locator('[data-testid=order-slot] option').evaluateAll((os, s) => os.some((o) => o.value === s), String(slot)),
    `slot ${slot} in the order form`,
  );
  await page.selectOption('[data-testid=order-slot]', String(slot));
  await page.fill('[data-testid=order-energy]', String(energy));
  await page.fill('[data-testid=order-price]', price);
  await page.click('[data-testid=place-order]');
  await notice(new RegExp(`Bid ${energy} Wh at ${price.replace('.', '\\.')} credits/kWh in slot ${slot}: placed`), 45_000);
  await idle();
  // The page has read the order back (and the balances with it) before the next one is placed.
  await page.locator(`[data-testid=own-order][data-slot="${slot}"][data-side=bid]`).waitFor({ timeout: 30_000 });
}

/** Every credit figure on the rendered page: numbers before "credits" (not "credits/kWh") and the
 *  unit-less cells of credit columns. */
async function creditFigures() {
  return page.evaluate(() => {
    const text = document.body.innerText;
    const inline = [...text.matchAll(/([+−-]?[\d.,]*\d)\s+credits(?!\/| per)/g)].map((m) => m[1]);
    const cells = [...document.querySelectorAll('td.credits')].map((td) => td.innerText.trim());
    return { inline, cells };
  });
}

describe('bills, reclaim, horizon and precision in Chromium (issue 18, items 5 and 8)', { timeout: 600_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    node = await startDevNode(['--slot-length', '10']);
    contracts = await fetch(`${node.url}/contracts.json`).then((r) => r.json());
    browser = await launchChromium();
    context = browser.context;
    page = await context.newPage();
    page.on('pageerror', (e) => console.error('[page error]', e));
    page.on('console', (m) => m.type() === 'warning' && console.log(`# [page console] ${m.text()}`));
    // Account 1: a consumer with meter key 101 that never reports. Account 0: a prosumer (and operator).
    wallet = new TestWallet({ accounts: [1, 0], chainId: 1337 });
    wallet.chains.set(1337, { rpcUrl: node.url, params: null });
    await wallet.install(page);
    await page.goto(node.url);
    await page.click('[data-testid=connect]');
    await waitText('[data-testid=account]', new RegExp(short(devAccount(1).address).replace('…', '.')));
    await waitText('[data-testid=registration]', /Consumer/);
  });

  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  it('refuses to reclaim when no order is unmatched, and sends nothing', async () => {
    await waitText('[data-testid=reclaim-hint]', /Nothing to reclaim/);
    await page.click('[data-testid=reclaim]');
    await notice(/Nothing to reclaim: no order of yours is unmatched in a cleared slot whose settlement is open/);
    assert.equal(wallet.count('eth_sendTransaction'), 0);
  });

  it('places a bid that will trade (slot T) and one that cannot (slot U); others sell in T', async () => {
    const first = BigInt(await page.locator('[data-testid=order-slot] option:not([disabled])').first().getAttribute('value'));
    T = first + 4n;
    U = T + 1n;
    await waitSlotOpen(T, true);
    await waitSlotOpen(U, true);
    await placeBid(T, 400, '0.200');
    await placeBid(U, 300, '0.081'); // no ask in U: cleared without a match
    for (const i of [0, 2]) {
      await sendFrom(i, contracts.token, tokenAbi, 'approve', [contracts.market, 10n ** 18n]);
      await sendFrom(i, contracts.market, marketAbi, 'deposit', [10n ** 17n]);
      await sendFrom(i, contracts.market, marketAbi, 'placeAsk', [T, 200, 100n * milli]);
    }
    // Account 0's meter (key 100) reports once before T and once early inside it, then falls silent:
    // late readings. Account 1's meter (key 101) never reports: missing readings.
    const start = slotStart(T);
    await sendFrom(100, contracts.readings, readingsAbi, 'submitReading', [0n, 5000n, start - 2n]);
    await sendFrom(100, contracts.readings, readingsAbi, 'submitReading', [0n, 5050n, start + 2n]);
  });

  it('flags a slot without meter readings before Settle and in the bill', async () => {
    await waitFor(async () => (await chainNow()) + BigInt(contracts.gateClosure) >= slotStart(U), `the gates of ${T} and ${U} to close`, 90_000);
    for (const slot of [T, U]) await sendFrom(3, contracts.market, marketAbi, 'clear', [slot]);
    // Before Settle: the row of T says, in words, what settling now would rest on.
    await waitFor(async () => (await slotRow(T).locator('[data-testid=settle]').count()) === 1, 'settlement of T to open', 60_000);
    const flag = page.locator(`[data-testid=readings-flag][data-slot="${T}"]`);
    assert.equal(await flag.getAttribute('data-kind'), 'missing');
    assert.match(
      await flag.innerText(),
      /Missing readings: your meter has no reading inside this slot \(it ended at \d\d:\d\d:\d\d; it has never reported\)\. Settling now counts 0 Wh used and 0 Wh delivered here/,
    );
    await shot('bills-flag-before-settle.png');
    await slotRow(T).locator('[data-testid=settle]').click();
    await notice(new RegExp(`Settle slot ${T}: done`));
    await idle();
    await page.click('[data-testid=tab-history]');
    const row = `[data-testid=settlement-row][data-slot="${T}"]`;
    await waitFor(() => page.locator(row).count(), 'the settlement row of T');
    assert.match(await textOf(row), /400 Wh \/ 0 Wh/); // bought 400 Wh, metered 0 Wh
    const billFlag = page.locator(`[data-testid=bill-flag][data-slot="${T}"]`);
    await billFlag.waitFor({ timeout: 10_000 });
    assert.equal(await billFlag.getAttribute('data-kind'), 'missing');
    assert.match(await billFlag.innerText(), new RegExp(`Slot #${T}: Missing readings: .*This bill counts 0 Wh used and 0 Wh delivered here`));
    await shot('bills-flag-in-bill.png');
  });

  it('flags late readings (the meter’s last reading is before the slot’s end) before Settle and in the bill', async () => {
    await wallet.switchAccount(1); // the wallet's second account: dev account 0 (prosumer)
    await waitText('[data-testid=account]', new RegExp(short(devAccount(0).address).replace('…', '.')));
    await page.click('[data-testid=tab-trade]');
    const flag = page.locator(`[data-testid=readings-flag][data-slot="${T}"]`);
    const seen = new Set();
    await waitFor(async () => {
      const kind = (await flag.count()) === 1 ? await flag.getAttribute('data-kind') : undefined;
      if (kind) seen.add(kind);
      return kind === 'late';
    }, 'the late-readings flag of account 0 in T');
    if (seen.size > 1) console.log(`# flags seen for account 0 in slot ${T} while the page loaded: ${[...seen].join(', ')}`);
    assert.match(await flag.innerText(), /Late readings: your meter's last reading \(\d\d:\d\d:\d\d\) is before the slot's end/);
    await slotRow(T).locator('[data-testid=settle]').click();
    await notice(new RegExp(`Settle slot ${T}: done`));
    await idle();
    await page.click('[data-testid=tab-history]');
    const billFlag = page.locator(`[data-testid=bill-flag][data-slot="${T}"]`);
    await billFlag.waitFor({ timeout: 30_000 });
    assert.equal(await billFlag.getAttribute('data-kind'), 'late');
    assert.match(await billFlag.innerText(), /This bill counts only the energy up to that reading/);
    await wallet.switchAccount(0);
    await waitText('[data-testid=account]', new RegExp(short(devAccount(1).address).replace('…', '.')));
    await page.click('[data-testid=tab-trade]');
  });

  it('reclaims the credits locked in an unmatched order in one action, then refuses (nothing left)', async () => {
    const me = devAccount(1).address;
    const locked = await read(contracts.market, marketAbi, 'lockedOf', [U, me]);
    assert.equal(locked, 300n * (81n + 50n) * milli / 1000n); // 300 Wh × (0.081 + the 0.050 long penalty)
    await waitText('[data-testid=reclaim-hint]', /0\.039300 credits locked in 1 unmatched order can be reclaimed now/, 60_000);
    await shot('bills-reclaim-ready.png');
    const [before] = await read(contracts.market, marketAbi, 'accountOf', [me]);
    const sent = wallet.count('eth_sendTransaction');
    await page.click('[data-testid=reclaim]');
    await notice(new RegExp(`Reclaimed 0\\.039300 credits from 1 unmatched order \\(slot #${U}\\)`), 45_000);
    await idle();
    assert.equal(wallet.count('eth_sendTransaction'), sent + 1); // one settle(U, [me])
    const [afterFree] = await read(contracts.market, marketAbi, 'accountOf', [me]);
    assert.equal(afterFree - before, locked, 'the free balance grew by exactly the lock of the unmatched bid');
    assert.equal(await read(contracts.market, marketAbi, 'lockedOf', [U, me]), 0n);
    const tx = page.locator('[data-testid=tx]', { hasText: `Reclaim 0.039300 credits from slot ${U} (unmatched)` });
    assert.equal(await tx.getAttribute('data-state'), 'included');
    await waitText('[data-testid=reclaim-hint]', /Nothing to reclaim/);
    await page.click('[data-testid=reclaim]');
    await notice(/Nothing to reclaim/);
    assert.equal(wallet.count('eth_sendTransaction'), sent + 1);
  });

  it('does not offer slots beyond the order horizon, and says why; the chain refuses them the same way', async () => {
    // The operator (account 0) shortens the horizon to 60 s: slots the keeper opens from now on keep it
    // (a slot keeps the horizon it was opened with).
    await sendFrom(0, contracts.registry, registryAbi, 'setOrderHorizon', [60]);
    // The form names the first slot its horizon keeps out (it starts more than 60 s from now).
    const hint = await waitFor(async () => {
      const m = /slot #(\d+) and later ones are not offered yet/.exec(await textOf('[data-testid=order-horizon]'));
      return m && BigInt(m[1]);
    }, 'the form to name the first slot beyond the horizon', 120_000);
    assert.match(await textOf('[data-testid=order-horizon]'), /Orders are taken only for slots starting within\s+1 min of now \(the operator's order horizon/);
    const info = await read(contracts.market, marketAbi, 'slotInfo', [hint]);
    assert.equal(info.status, 1, `slot ${hint} is open`);
    assert.equal(info.orderHorizon, 60);
    // Two slots later: beyond the horizon for at least another 10 s, long enough for the checks below.
    const far = hint + 2n;
    await waitSlotOpen(far);
    assert.equal((await read(contracts.market, marketAbi, 'slotInfo', [far])).orderHorizon, 60);
    assert.ok(slotStart(far) > (await chainNow()) + 60n, `slot ${far} starts within the horizon already`);
    const offered = await page.locator('[data-testid=order-slot] option').evaluateAll((os) => os.map((o) => o.value));
    for (const s of [hint, far]) assert.ok(!offered.includes(String(s)), `slot ${s} (beyond the horizon) is offered: ${offered}`);
    await shot('bills-horizon.png');
    // The contract agrees: an order for that slot now is refused with BeyondHorizon.
    const { public: p } = keyClient(node.url, contracts.chainId, 2);
    const err = await p
      .simulateContract({ account: devAccount(2), address: contracts.market, abi: marketAbi, functionName: 'placeBid', args: [far, 10, 100n * milli] })
      .then(() => undefined, (e) => e);
    assert.ok(err instanceof BaseError, 'an order beyond the horizon must revert');
    const revert = err.walk((e) => e instanceof ContractFunctionRevertedError);
    assert.equal(revert?.data?.errorName, 'BeyondHorizon');
    // Once the first slot comes within the horizon (it starts at most 60 s from now), the form offers it.
    await waitFor(
      async () => page.locator('[data-testid=order-slot] option:not([disabled])').evaluateAll((os, s) => os.some((o) => o.value === s), String(hint)),
      `slot ${hint} to be offered once within the horizon`,
      60_000,
    );
    assert.ok(slotStart(hint) <= (await chainNow()) + 60n + 2n, 'offered only within the horizon');
  });

  it('shows every credit figure with the same 6 decimals (trade and history views)', async () => {
    let total = 0;
    for (const tab of ['trade', 'history']) {
      await page.click(`[data-testid=tab-${tab}]`);
      await page.waitForTimeout(500);
      const { inline, cells } = await creditFigures();
      for (const f of [...inline, ...cells]) assert.match(f, CREDIT_FIGURE, `credit figure "${f}" on the ${tab} view`);
      total += inline.length + cells.length;
      await shot(`bills-precision-${tab}.png`);
    }
    // Balances, locks, the tracker's labels and the bills: far more than a handful of figures.
    assert.ok(total >= 10, `only ${total} credit figures found`);
  });
});
