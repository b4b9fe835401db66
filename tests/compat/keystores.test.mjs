// Users' own keys (issue 16, part 4): Web3 Secret Storage files written by ethers v6 (which names the
// cipher section "Crypto") and a geth-format fixture (scrypt n = 2^18, "address" without 0x, as geth
// writes it; made once with eth-keyfile, tests/compat/fixtures/keystores/README.md) are opened by the
// real `p2pe-node account inspect` and by the real bridge's `--check`. web3.py's eth-account files
// are covered by test_web3.py.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ethers } from 'ethers';
import { nodeBin } from './node.mjs';

const dir = mkdtempSync(path.join(tmpdir(), 'p2pe-keystores-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const fixtures = new URL('./fixtures/keystores/', import.meta.url);

function inspect(file, password) {
  const pw = path.join(dir, `${path.basename(file)}.pw`);
  writeFileSync(pw, `${password}\n`, { mode: 0o600 });
  return spawnSync(nodeBin(), ['account', 'inspect', file, '--password-file', pw], { encoding: 'utf8' });
}

test('an ethers v6 keystore ("Crypto") opens in p2pe-node', async () => {
  const wallet = ethers.Wallet.createRandom();
  const json = await wallet.encrypt('ethers password');
  assert.ok(JSON.parse(json).Crypto, 'ethers v6 writes "Crypto"');
  const file = path.join(dir, 'ethers.json');
  writeFileSync(file, json, { mode: 0o600 });
  const ok = inspect(file, 'ethers password');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), wallet.address);
  const wrong = inspect(file, 'not the password');
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /wrong password/);
  assert.ok(!wrong.stderr.includes(wallet.privateKey.slice(2)), 'the key is never printed');
});

test('a geth-format keystore opens in p2pe-node', () => {
  const meta = JSON.parse(readFileSync(new URL('geth-scrypt.meta.json', fixtures), 'utf8'));
  const file = new URL('geth-scrypt.json', fixtures).pathname;
  const ok = inspect(file, meta.password);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim().toLowerCase(), meta.address.toLowerCase());
});

test('the bridge --check accepts a meter key from an ethers keystore', async () => {
  const wallet = ethers.Wallet.createRandom();
  writeFileSync(path.join(dir, 'meter.json'), await wallet.encrypt('meter pw'), { mode: 0o600 });
  writeFileSync(path.join(dir, 'meter.pw'), 'meter pw\n', { mode: 0o600 });
  const config = [
    '[broker]',
    'url = "mqtt://127.0.0.1:1"',
    'client_id = "keystore-check"',
    '[chain]',
    'rpc_urls = ["http://127.0.0.1:1"]',
    'readings = "0x120F3E8a2ecE628B57D2f2b977ADACdD2E4B2206"',
    'chain_id = 1337',
    '[outbox]',
    'path = "outbox.sqlite"',
    '[keys]',
    'password_file = "meter.pw"',
    '[meters.m1]',
    `address = "${wallet.address}"`,
    'keystore = "meter.json"',
    'format = "json"',
    'topic = "meters/m1"',
  ].join('\n');
  writeFileSync(path.join(dir, 'bridge.toml'), config);
  const bridge = path.join(path.dirname(nodeBin()), 'p2pe-mqtt-bridge');
  const out = execFileSync(bridge, ['--config', 'bridge.toml', '--check'], { cwd: dir, encoding: 'utf8' });
  assert.match(out, /ok|OK|valid/i, out);
});
