// A hostile web page in real Chromium against a real `p2pe-node dev --rpc-admin` (the worst case:
// the operator enabled the privileged methods, so only the server's Origin and Host checks stand
// between the page and `clique_propose`). The page comes from a tiny static server of this test on
// another port (another origin) and tries clique_propose as a JSON fetch, a text/plain "simple"
// POST (no preflight), a no-cors fetch (opaque: the page learns nothing, but the request is sent)
// and over WebSocket (no preflight either). The node must record no vote; the same page served
// from an origin allowed with --http-corsdomain gets through, which shows the checks are what
// stops the hostile one. A page whose host name resolves to 127.0.0.1 (DNS rebinding, simulated
// with Chromium's --host-resolver-rules) is refused by the Host check.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { launchChromium } from './kit.mjs';
import { freePort, startDevNode } from './node.mjs';

const DEAD = '0x000000000000000000000000000000000000dead';
const BEEF = '0x000000000000000000000000000000000000beef';

// The attacker's page: every way a page can send clique_propose, and what the page saw.
const PAGE = `<!doctype html><meta charset="utf-8"><title>a page</title><script>
const q = new URLSearchParams(location.search);
const node = q.get('node');
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'clique_propose', params: [q.get('vote'), q.get('authorize') === 'true'] });
const outcome = (p) => p.then(async (r) => ({ ok: true, type: r.type, status: r.status, body: r.type === 'opaque' ? null : await r.text() }),
  (e) => ({ ok: false, error: String(e) }));
async function overWebSocket() {
  return new Promise((resolve) => {
    const seen = { opened: false };
    const ws = new WebSocket(node.replace('http://', 'ws://'));
    ws.onopen = () => { seen.opened = true; ws.send(body); };
    ws.onmessage = (m) => { seen.answer = JSON.parse(m.data); ws.close(); };
    ws.onerror = () => { seen.error = true; };
    ws.onclose = (e) => resolve({ ...seen, code: e.code });
  });
}
(async () => {
  const r = {};
  r.json = await outcome(fetch(node, { method: 'POST', headers: { 'content-type': 'application/json' }, body }));
  r.simple = await outcome(fetch(node, { method: 'POST', headers: { 'content-type': 'text/plain' }, body }));
  r.noCors = await outcome(fetch(node, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body }));
  r.ws = await overWebSocket();
  window.__results = r;
})();
</script>`;

function staticServer(port) {
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

let node;
let context;
let browser; // launchChromium's { context, close }
let evilPort;
let okPort;
const servers = [];

/** A privileged call from outside any browser (no Origin), as the operator's tools make it. */
async function call(method, params = []) {
  const res = await fetch(node.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  }).then((r) => r.json());
  if (res.error) throw new Error(`${method}: ${res.error.message}`);
  return res.result;
}

async function attack(port, vote, authorize) {
  const page = await context.newPage();
  try {
    const q = new URLSearchParams({ node: node.url, vote, authorize: String(authorize) });
    await page.goto(`http://127.0.0.1:${port}/?${q}`);
    await page.waitForFunction(() => window.__results, null, { timeout: 30_000 });
    return await page.evaluate(() => window.__results);
  } finally {
    await page.close();
  }
}

describe('a hostile page cannot use the node', { timeout: 120_000 }, () => {
  before(async () => {
    [evilPort, okPort] = [await freePort(), await freePort()];
    servers.push(await staticServer(evilPort), await staticServer(okPort));
    node = await startDevNode(['--period', '1', '--rpc-admin', '--http-corsdomain', `http://127.0.0.1:${okPort}`]);
    browser = await launchChromium(['--host-resolver-rules=MAP evil.example 127.0.0.1']);
    context = browser.context;
  });

  after(async () => {
    await browser?.close();
    await node?.stop();
    for (const s of servers) s.close();
  });

  it('refuses clique_propose from another origin over fetch, simple POST, no-cors and WebSocket', async () => {
    const signers = await call('clique_getSigners');
    const from = Number(await call('eth_blockNumber'));
    const r = await attack(evilPort, DEAD, true);
    // What the page saw: failed fetches (no CORS header on the 403), an opaque answer, and a
    // WebSocket that never opened.
    assert.equal(r.json.ok, false, JSON.stringify(r.json));
    assert.match(r.json.error, /TypeError/);
    assert.equal(r.simple.ok, false, JSON.stringify(r.simple));
    assert.deepEqual([r.noCors.ok, r.noCors.type, r.noCors.status], [true, 'opaque', 0]);
    assert.equal(r.ws.opened, false, JSON.stringify(r.ws));
    assert.equal(r.ws.code, 1006);
    // What the node did: no vote, and the next blocks carry none.
    assert.deepEqual(await call('clique_proposals'), {});
    await waitBlocks(from + 3);
    for (let n = from + 1; n <= from + 3; n++) {
      const b = await call('eth_getBlockByNumber', [`0x${n.toString(16)}`, false]);
      assert.equal(b.miner, '0x0000000000000000000000000000000000000000', `block ${n} carries a vote`);
    }
    assert.deepEqual(await call('clique_getSigners'), signers);
  });

  it('refuses a page whose host name was rebound to 127.0.0.1', async () => {
    const page = await context.newPage();
    try {
      const port = new URL(node.url).port;
      const res = await page.goto(`http://evil.example:${port}/`);
      assert.equal(res.status(), 403);
      assert.match(await res.text(), /--http-vhosts/);
    } finally {
      await page.close();
    }
    assert.deepEqual(await call('clique_proposals'), {});
  });

  it('serves the same page from an origin allowed with --http-corsdomain', async () => {
    const r = await attack(okPort, BEEF, false);
    assert.equal(r.json.ok, true, JSON.stringify(r.json));
    assert.equal(JSON.parse(r.json.body).result, null);
    assert.equal(r.ws.opened, true, JSON.stringify(r.ws));
    assert.equal(r.ws.answer.result, null);
    // The text/plain POST is refused by the content-type rule even from an allowed origin.
    assert.equal(r.simple.ok, true);
    assert.equal(r.simple.status, 415);
    assert.deepEqual(await call('clique_proposals'), { [BEEF]: false });
  });
});

async function waitBlocks(n) {
  const end = Date.now() + 30_000;
  while (Number(await call('eth_blockNumber')) < n) {
    assert.ok(Date.now() < end, `block ${n} not reached`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
