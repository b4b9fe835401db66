#!/usr/bin/env node
// Offline solc for forge: a thin front-end over the pinned npm `solc` (solcjs)
// that speaks the subset of the native `solc` CLI that forge uses:
//   solc --version                 -> "Version: 0.8.37+commit.<hash>.<platform>"
//   solc --standard-json [opts..]  -> standard JSON in on stdin, out on stdout
// Options forge adds (--allow-paths, --base-path, --include-path, ...) are
// honoured by the import callback (base/include paths) or ignored (allow-paths).
// Using the solc module API directly (not the solcjs CLI) means no ">>>" noise
// ever reaches stdout, which forge parses as JSON.
'use strict';
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);

function loadSolc() {
  // Emscripten installs an uncaughtException handler; keep ours readable.
  const solc = require(path.join(__dirname, 'node_modules', 'solc'));
  return solc;
}

if (args.includes('--version') || args.includes('-v')) {
  const solc = loadSolc();
  process.stdout.write('solc, the solidity compiler commandline interface\n');
  process.stdout.write('Version: ' + solc.version() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wrapper: only --version and --standard-json are supported; got: ' + args.join(' ') + '\n');
  process.exit(2);
}

// Collect --base-path / --include-path values (both "--opt v" and "--opt=v").
const prefixes = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  for (const opt of ['--base-path', '--include-path']) {
    if (a === opt && i + 1 < args.length) prefixes.push(args[++i]);
    else if (a.startsWith(opt + '=')) prefixes.push(a.slice(opt.length + 1));
  }
}
if (prefixes.length === 0) prefixes.push(process.cwd());

function findImports(p) {
  const candidates = path.isAbsolute(p) ? [p] : prefixes.map((b) => path.join(b, p));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (_) { /* try next */ }
  }
  return { error: 'File not found: ' + p };
}

const input = fs.readFileSync(0, 'utf8');
const solc = loadSolc();
const output = solc.compile(input, { import: findImports });
process.stdout.write(output);
