// Where p2pe-node serves the dApp: on the JSON-RPC port by default, on --ui-port (which answers
// JSON-RPC too, so the page's origin is its RPC URL), or not at all with --no-ui.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { freePort, nodeBin, startDevNode } from './node.mjs';

const rpc = (url) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
  }).then((r) => r.json());

describe('serving the dApp', { timeout: 120_000 }, () => {
  it('--ui-port moves the page (and /contracts.json) to its own port, which answers JSON-RPC too', async () => {
    const uiPort = await freePort();
    const node = await startDevNode(['--ui-port', String(uiPort)]);
    try {
      const ui = `http://127.0.0.1:${uiPort}`;
      const page = await fetch(`${ui}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<div id="app">/);
      assert.equal((await fetch(`${ui}/contracts.json`).then((r) => r.json())).chainId, 1337);
      assert.equal((await rpc(ui)).result, '0x539');
      // The JSON-RPC port keeps JSON-RPC and no longer serves the page.
      assert.equal((await rpc(node.url)).result, '0x539');
      const get = await fetch(`${node.url}/`);
      assert.equal(get.status, 405);
      assert.match((await get.json()).error.message, /use POST for JSON-RPC/);
    } finally {
      await node.stop();
    }
  });

  it('--no-ui serves no page', async () => {
    const node = await startDevNode(['--no-ui']);
    try {
      assert.equal((await fetch(`${node.url}/`)).status, 405);
      assert.equal((await fetch(`${node.url}/assets/app.js`)).status, 404);
      assert.equal((await fetch(`${node.url}/contracts.json`)).status, 404);
      assert.equal((await rpc(node.url)).result, '0x539');
    } finally {
      await node.stop();
    }
  });

  it('refuses --ui-port together with --no-ui', () => {
    const r = spawnSync(nodeBin(), ['dev', '--ui-port', '1', '--no-ui'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /cannot be used with/);
  });
});
