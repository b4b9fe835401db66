// Starts a real `p2pe-node dev` for the browser tests: $P2PE_NODE_BIN, else the newest of
// target/{debug,release}/p2pe-node; a free port; ready once it prints its "JSON-RPC:" line.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function nodeBin() {
  if (process.env.P2PE_NODE_BIN) return process.env.P2PE_NODE_BIN;
  const found = ['debug', 'release']
    .map((p) => path.join(root, 'target', p, 'p2pe-node'))
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!found.length) throw new Error('p2pe-node is not built: run `cargo build -p p2pe-node`');
  return found[0];
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Starts `p2pe-node dev ARGS`; resolves to { url, port, output(), stop() }. */
export async function startDevNode(args = [], fixedPort = undefined) {
  const port = fixedPort ?? (await freePort());
  const child = spawn(nodeBin(), ['dev', '--http-addr', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, P2PE_LOG: process.env.P2PE_LOG ?? 'warn' },
  });
  let out = '';
  child.stderr.on('data', (d) => {
    out += d;
    if (process.env.P2PE_TEST_VERBOSE) process.stderr.write(`[node] ${d}`);
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`p2pe-node did not start within 60 s:\n${out}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('JSON-RPC:')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`p2pe-node exited with ${code}:\n${out}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    output: () => out,
    stop: () =>
      new Promise((resolve) => {
        child.removeAllListeners('exit');
        if (child.exitCode !== null) return resolve();
        child.on('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}
