#!/usr/bin/env node
// Copies the deployable contracts' ABI and bytecode from a forge `out` directory into bindings/artifacts.
// Usage: node scripts/extract-artifacts.cjs <forge-out-dir> <dest-dir>
'use strict';
const fs = require('fs');
const path = require('path');

const CONTRACTS = ['Registry', 'CreditToken', 'MeterReadings', 'EnergyMarket'];
const [outDir, destDir] = process.argv.slice(2);
if (!outDir || !destDir) {
  console.error('usage: extract-artifacts.cjs <forge-out-dir> <dest-dir>');
  process.exit(2);
}
fs.mkdirSync(destDir, { recursive: true });
for (const name of CONTRACTS) {
  const src = path.join(outDir, `${name}.sol`, `${name}.json`);
  const a = JSON.parse(fs.readFileSync(src, 'utf8'));
  const slim = {
    abi: a.abi,
    bytecode: { object: a.bytecode.object },
    deployedBytecode: { object: a.deployedBytecode.object },
  };
  fs.writeFileSync(path.join(destDir, `${name}.json`), JSON.stringify(slim, null, 2) + '\n');
  console.log(`wrote ${path.join(destDir, name + '.json')}`);
}
