// Helpers the browser test files share: polling with the page's notices in the failure message,
// and sending a contract call from a dev key through viem.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { keyClient } from './wallet.mjs';

/** Debian's Chromium (the test command installs it), or $CHROMIUM_BIN. */
export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/** Starts headless Chromium with a fresh profile in a temporary directory, with `extraArgs` after
 *  the common flags (no sandbox, GPU, first-run page or background traffic). Resolves to
 *  { context, close() }; `close()` closes the browser and removes the profile. */
export async function launchChromium(extraArgs = []) {
  const userData = mkdtempSync(path.join(tmpdir(), 'p2pe-chromium-'));
  const removeProfile = () => rmSync(userData, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        ...extraArgs,
      ],
      viewport: { width: 1280, height: 900 },
    });
  } catch (e) {
    removeProfile();
    throw e;
  }
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      removeProfile();
    },
  };
}

/** A `waitFor(fn, what, timeout)` that polls `fn` every 200 ms until it returns something truthy
 *  (a throw counts as not yet) and, on timeout, names `what`, the last value and the notices shown
 *  by the page `getPage()` returns (if any). */
export function waitForWith(getPage) {
  return async function waitFor(fn, what, timeout = 30_000) {
    const end = Date.now() + timeout;
    let last;
    for (;;) {
      try {
        last = await fn();
        if (last) return last;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) {
        const notices = await getPage()?.locator('[data-testid=notices]').innerText().catch(() => '');
        throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last}); notices: ${notices}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
}

/** Sends `functionName(args)` of `address` from dev key `index` on the node at `url` and asserts
 *  that it succeeded; returns the receipt. */
export async function sendFromKey(url, chainId, index, address, abiItems, functionName, args) {
  const { wallet: w, public: p } = keyClient(url, chainId, index);
  const hash = await w.writeContract({ address, abi: abiItems, functionName, args });
  const receipt = await p.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, 'success', `${functionName} from key ${index}`);
  return receipt;
}
