// Issue 17, part 5 ("The dApp shows it live"), in Chromium with the injected test wallet against a real
// `p2pe-node dev --slot-length 5`: the operator view opens with no microgrid report, then shows live,
// without a reload, the PCC limits the operator sets, a slot's report (import/export against the limits,
// curtailed and shed energy, the storage's state of charge), a correction of that report, and the
// islanded band. The page is the one the node serves (web/dist/ embedded at build time; dapp.test.mjs
// checks that it is the same build). Screenshot in tests/artifacts/web/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launchChromium, sendFromKey, waitForWith } from './kit.mjs';
import { root, startDevNode } from './node.mjs';
import { TestWallet, devAccount, keyClient } from './wallet.mjs';

const SHOTS = path.join(root, 'tests', 'artifacts', 'web');
const registryAbi = JSON.parse(readFileSync(path.join(root, 'bindings', 'artifacts', 'Registry.json'), 'utf8')).abi;
const short = (a) => `${a.slice(0, 6)}…${a.slice(-4)}`;

let node;
let context;
let page;
let contracts;
let browser; // launchChromium's { context, close }

const waitFor = waitForWith(() => page);
const textOf = (sel) => page.locator(sel).first().innerText({ timeout: 2_000 });
const waitText = (sel, re, timeout = 15_000) => waitFor(async () => re.test(await textOf(sel)), `${sel} to show ${re}`, timeout);
const asOperator = (functionName, args) => sendFromKey(node.url, contracts.chainId, 0, contracts.registry, registryAbi, functionName, args);

describe('the microgrid in the operator view, live (issue 17, part 5)', { timeout: 120_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    node = await startDevNode(['--slot-length', '5']);
    contracts = await fetch(`${node.url}/contracts.json`).then((r) => r.json());
    browser = await launchChromium();
    context = browser.context;
    page = await context.newPage();
    page.on('pageerror', (e) => console.error('[page error]', e));
    // Account 0: the operator in the dev genesis.
    const wallet = new TestWallet({ accounts: [0], chainId: 1337 });
    wallet.chains.set(1337, { rpcUrl: node.url, params: null });
    await wallet.install(page);
    await page.goto(`${node.url}/#operator`);
    await page.click('[data-testid=connect]');
    await waitText('[data-testid=account]', new RegExp(short(devAccount(0).address).replace('…', '.')));
  });

  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  it('shows the limits, a slot’s report and its correction, and the islanded band as they arrive', async () => {
    await waitText('[data-testid=pcc-limits]', /import limit no limit,\s+export limit no limit/);
    await waitText('[data-testid=microgrid-empty]', /No microgrid report yet/);
    await waitText('[data-testid=microgrid-mode]', /grid-connected/);

    await asOperator('setConnectionLimits', [30_000, 15_000]);
    await waitText('[data-testid=pcc-limits]', /import limit 30\.00 kW,\s+export limit 15\.00 kW/);

    // A slot that has ended by the chain's clock (the chain may be younger than one slot: then wait).
    const chainNow = async () => (await keyClient(node.url, contracts.chainId, 0).public.getBlock()).timestamp;
    const [start, length] = [BigInt(contracts.startTime), BigInt(contracts.slotLength)];
    const current = (await chainNow() - start) / length;
    const slot = current > 0n ? current - 1n : 0n;
    await waitFor(async () => (await chainNow()) >= start + (slot + 1n) * length, `slot ${slot} to end`);
    const report = {
      importWh: 1_200,
      exportWh: 300,
      peakImportW: 24_000,
      peakExportW: 18_000,
      curtailedWh: 150,
      shedWh: 40,
      storageWh: 7_500,
      storageCapacityWh: 10_000,
      generatorWh: 500,
    };
    await asOperator('reportMicrogrid', [slot, report]);
    const row = `[data-testid=microgrid-row][data-slot="${slot}"]`;
    await waitText(`${row} [data-testid=mg-import]`, /^1,200 Wh$/);
    assert.equal(await textOf(`${row} [data-testid=mg-export]`), '300 Wh');
    assert.equal(await textOf(`${row} [data-testid=mg-peak-import]`), '24.00 kW of 30.00 kW, 80 %');
    assert.equal(await textOf(`${row} [data-testid=mg-peak-export]`), '18.00 kW of 15.00 kW, 120 % (over the limit)');
    assert.equal(await textOf(`${row} [data-testid=mg-curtailed]`), '150 Wh');
    assert.equal(await textOf(`${row} [data-testid=mg-shed]`), '40 Wh');
    assert.equal(await textOf('[data-testid=microgrid-storage]'), '7,500 Wh of 10.00 kWh (75 %)');
    assert.equal(await textOf('[data-testid=microgrid-genset]'), '500 Wh');
    assert.match(await textOf('[data-testid=microgrid-totals]'), /Over 1 reported slot: import 1,200 Wh, export 300 Wh, PV curtailed 150 Wh, load shed \(unserved\) 40 Wh/);

    // A correction of the same slot replaces the report.
    await asOperator('reportMicrogrid', [slot, { ...report, shedWh: 0, storageWh: 2_500 }]);
    await waitText('[data-testid=microgrid-storage]', /^2,500 Wh of 10\.00 kWh \(25 %\)$/);
    assert.equal(await textOf(`${row} [data-testid=mg-shed]`), '0 Wh');
    assert.equal(await page.locator('[data-testid=microgrid-row]').count(), 1);
    assert.match(await textOf('[data-testid=microgrid-totals]'), /Over 1 reported slot: .* load shed \(unserved\) 0 Wh/);

    await asOperator('setIslanded', [80n * 10n ** 15n, 335n * 10n ** 15n]);
    await waitText('[data-testid=island-band]', /^0\.080 … 0\.335 credits\/kWh$/);
    await waitText('[data-testid=microgrid-mode]', /islanded/);
    assert.match(await textOf('[data-testid=microgrid-table] thead'), /Drawn from community assets\s+Fed into community assets/);
    await page.screenshot({ path: path.join(SHOTS, 'microgrid.png'), fullPage: true });

    // A reload reads the same from the chain (state and history).
    await page.reload();
    await waitText(`${row} [data-testid=mg-storage]`, /2,500 Wh of 10\.00 kWh \(25 %\)/);
    await waitText('[data-testid=island-band]', /0\.080 … 0\.335 credits\/kWh/);
    await waitText('[data-testid=pcc-limits]', /import limit 30\.00 kW,\s+export limit 15\.00 kW/);
  });
});
