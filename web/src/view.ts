// Everything the page shows, as lit-html templates over the App's state.

import { type TemplateResult, html, nothing } from 'lit-html';
import { repeat } from 'lit-html/directives/repeat.js';
import { type Address, getAddress, isAddress } from 'viem';
import { type App, type Position, type SettlementRecord, type SlotView, positionLock, reclaimRefusal } from './app';
import { describeTx, isFinal, txLink } from './tracker';
import { closesSoon, gateOpen, safeDefaultSlot } from './slotchoice';
import { markField } from './input';
import { formatHorizon, revertSentence } from './errors';
import { barChart, compactNumber, increaseSinceFirst, lineChart } from './charts';
import {
  type ReportRecord,
  bandLabel,
  flowLabels,
  hasLimit,
  latestReport,
  limitLabel,
  microgridRows,
  microgridTotals,
  MICROGRID_SLOTS,
  NO_CONNECTION_LIMIT,
  storageText,
} from './microgrid';
import {
  costOf,
  formatClock,
  formatCredits,
  formatDuration,
  formatEnergy,
  formatPrice,
  parseDecimal,
  parseEnergyWh,
  parsePositiveCredits,
  parsePrice,
  priceDecimals,
  shortAddress,
} from './format';
import {
  type Premiums,
  type ReadingsFlag,
  type Schedule,
  type Side,
  NO_PREMIUMS,
  lastSlotWithinHorizon,
  readingsFlag,
  withinHorizon,
  bookSides,
  computeClearing,
  gateClosureTime,
  levelPrice,
  lockFor,
  phaseOf,
  settlementOpensAt,
  slotEnd,
  slotStart,
} from './market';

const credits = (base: bigint): number => Number(base) / 1e18;

interface Draft {
  side: Side;
  /** Set once (the safe default) and then only by the user: the form never switches slots itself. */
  slot?: string;
  energy: string;
  price: string;
  /** The price field is prefilled once; an emptied field stays empty (and is refused). */
  pricePrefilled: boolean;
}
const draft: Draft = { side: 'bid', energy: '500', price: '', pricePrefilled: false };

/** A form field's problem: aria-invalid and a message tied to it with aria-describedby. */
function fieldError(id: string, error: string | undefined): TemplateResult | typeof nothing {
  return error ? html`<span class="field-error small" id=${id} data-testid=${id}>${error}</span>` : nothing;
}
const errorOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
};

// ------------------------------------------------------------------ layout

export function appView(app: App): TemplateResult {
  const s = app.state;
  return html`
    ${header(app)}
    ${problemBanner(app)} ${outageBanner(app)}
    ${notices(app)}
    ${trackerView(app)}
    ${s.fatal
      ? html`<main><section class="card error-card" data-testid="fatal"><h2>The market is unreachable</h2><p>${s.fatal}</p></section></main>`
      : s.loading || !s.config
        ? html`<main><section class="card"><p class="muted">Connecting to the node…</p></section></main>`
        : html`${tabs(app)}
            <main>
              ${s.view === 'history' ? historyView(app) : s.view === 'operator' ? operatorView(app) : tradeView(app)}
            </main>`}
    <footer>
      ${s.config
        ? html`Contracts from ${s.config.source === 'contracts.json' ? 'the node’s /contracts.json' : 'the genesis table'}:
            market <code>${s.config.market}</code>. Prices in credits per kWh; energy in Wh. Transactions on this
            chain cost no fee.`
        : nothing}
    </footer>
  `;
}

function header(app: App): TemplateResult {
  const s = app.state;
  return html`<header class="top">
    <div class="brand">
      <svg viewBox="0 0 32 32" aria-hidden="true" class="logo"><path d="M18 2 6 18h8l-2 12 12-16h-8z"></path></svg>
      <div>
        <h1>P2P Energy</h1>
        <p class="muted small">Neighbourhood energy market</p>
      </div>
    </div>
    <div class="chain-status small" data-testid="chain-status">
      ${s.config
        ? html`<span>${s.config.chainName}</span>
            <span>block ${s.head ? `#${s.head.number}` : '…'}</span>
            <span class=${s.live ? 'live' : 'stale'}>${s.live ? '● live' : s.outageSince !== undefined ? '○ node unreachable' : '○ reconnecting'}</span>`
        : nothing}
    </div>
    ${walletArea(app)}
  </header>`;
}

function walletArea(app: App): TemplateResult {
  const w = app.state.wallet;
  if (w.selected && w.account) {
    const me = app.state.me;
    return html`<div class="wallet" data-testid="wallet">
      <div class="account-chip" title=${w.account}>
        <span class="dot ${app.onRightNetwork ? 'ok' : 'bad'}"></span>
        <span data-testid="account">${shortAddress(w.account)}</span>
        ${me && me.role !== 'none' ? html`<span class="badge">${me.role}</span>` : nothing}
        ${me?.isOperator ? html`<span class="badge op">operator</span>` : nothing}
      </div>
      <div class="wallet-actions">
        <button class="link" data-testid="add-network" @click=${() => app.addOrSwitchNetwork('add')}>Add network</button>
        <button class="link" @click=${() => app.disconnect()}>Disconnect</button>
      </div>
    </div>`;
  }
  if (!w.discovered) return html`<div class="wallet muted small">Looking for wallets…</div>`;
  if (w.wallets.length === 0) {
    return html`<div class="wallet small" data-testid="no-wallet">
      No wallet found. Install MetaMask (or another Ethereum wallet) to trade. The market is visible without one.
    </div>`;
  }
  return html`<div class="wallet" data-testid="wallet">
    ${w.wallets.map(
      (d) => html`<button class="primary" ?disabled=${w.connecting} data-testid="connect" @click=${() => app.connect(d)}>
        ${d.info.icon ? html`<img src=${d.info.icon} alt="" width="18" height="18" />` : nothing}
        ${w.connecting ? 'Connecting…' : `Connect ${d.info.name}`}
      </button>`,
    )}
  </div>`;
}

function problemBanner(app: App): TemplateResult | typeof nothing {
  const w = app.state.wallet;
  if (!w.problem) return nothing;
  const wrong = w.selected && app.state.config && w.chainId !== undefined && w.chainId !== app.state.config.chainId;
  return html`<div class="banner warn" role="alert" data-testid="wallet-problem">
    <p>${w.problem}</p>
    ${wrong
      ? html`<div class="row">
          <button class="primary" data-testid="switch-network" @click=${() => app.addOrSwitchNetwork('switch')}>
            Switch to ${app.state.config!.chainName}
          </button>
          <button @click=${() => app.addOrSwitchNetwork('add')}>Add network</button>
        </div>`
      : nothing}
  </div>`;
}

function outageBanner(app: App): TemplateResult | typeof nothing {
  const since = app.state.outageSince;
  if (since === undefined) return nothing;
  return html`<div class="banner bad" role="alert" data-testid="outage">
    <p>
      The node has not answered for <b>${formatDuration((Date.now() - since) / 1000)}</b> (since
      ${formatClock(Math.floor(since / 1000))}). Trading and operator actions are disabled until it is back; the page
      keeps trying, less and less often (at most every 30 s).
    </p>
  </div>`;
}

function trackerView(app: App): TemplateResult | typeof nothing {
  const txs = app.trackedTxs();
  if (txs.length === 0) return nothing;
  const now = Date.now();
  const focus = app.state.txFocus;
  return html`<section class="tracker card" data-testid="tracker" aria-label="Your transactions">
    <div class="row between">
      <h2>Your transactions</h2>
      ${txs.some((t) => isFinal(t.state))
        ? html`<button class="link small" data-testid="tracker-clear" @click=${() => app.tracker.clearFinished()}>Clear finished</button>`
        : nothing}
    </div>
    <ul>
      ${repeat(
        txs,
        (t) => t.id,
        (t) => html`<li class="tx ${t.state} ${t.unseen ? 'unseen' : ''} ${focus && t.hash?.toLowerCase() === focus ? 'focus' : ''}"
          data-testid="tx" data-state=${t.state} data-unseen=${t.unseen ? 'yes' : 'no'}>
          <div class="tx-head">
            <b>${t.label}</b>
            <span class="small muted">${formatDuration(((t.endedAt ?? now) - t.startedAt) / 1000)}</span>
          </div>
          <div class="small tx-state ${t.unseen || t.state === 'failed' ? 'warn-text' : ''}" data-testid="tx-state">${describeTx(t)}</div>
          ${t.hash
            ? html`<div class="small tx-hash">
                <a class="mono" href=${txLink(app.state.txLink, t.hash)} data-testid="tx-link" title="Open in the explorer">${t.hash}</a>
                <button class="link small" data-testid="tx-copy" aria-label="Copy the transaction hash"
                  @click=${() => void navigator.clipboard?.writeText(t.hash!).then(
                    () => app.notify('ok', 'Transaction hash copied.'),
                    () => app.notify('info', `Copy it by hand: ${t.hash}`),
                  )}>Copy</button>
              </div>`
            : nothing}
          ${t.state === 'sent'
            ? html`<button class="small" data-testid="tx-stop" @click=${() => app.stopWaiting(t.id)}>Stop waiting</button>`
            : nothing}
        </li>`,
      )}
    </ul>
  </section>`;
}

function notices(app: App): TemplateResult {
  return html`<div class="notices" aria-live="polite" data-testid="notices">
    ${repeat(
      app.state.notices,
      (n) => n.id,
      (n) => html`<div class="notice ${n.kind}" data-kind=${n.kind}>
        <span>${n.text}</span>
        <button class="link" aria-label="Dismiss" @click=${() => app.dismiss(n.id)}>×</button>
      </div>`,
    )}
  </div>`;
}

function tabs(app: App): TemplateResult {
  const s = app.state;
  const tab = (id: string, label: string) =>
    html`<a href="#${id}" class=${s.view === id ? 'tab active' : 'tab'} data-testid="tab-${id}">${label}</a>`;
  return html`<nav class="tabs">
    ${tab('trade', 'Trade')} ${tab('history', 'History & bills')} ${s.me?.isOperator || s.view === 'operator' ? tab('operator', 'Operator') : nothing}
    ${s.busy ? html`<span class="busy small" data-testid="busy">⏳ ${s.busy}</span>` : nothing}
  </nav>`;
}

// ------------------------------------------------------------------ trade view

function tradeView(app: App): TemplateResult {
  return html`
    ${accountCard(app)}
    <div class="grid">
      <div class="col">${slotsCard(app)} ${bookCard(app)}</div>
      <div class="col orders">${orderForm(app)} ${ownOrdersCard(app)}</div>
    </div>
  `;
}

function lockedTotal(app: App): bigint {
  let sum = 0n;
  for (const v of app.state.slots) {
    const p = v.position;
    if (p && !p.settled) sum += positionLock(v, p);
  }
  return sum;
}

/** A slot's readings flag in words (see market.ts, ReadingsFlag), or undefined when the readings are
 *  complete. `when` says whose view it is: before settling ("settling now") or in a bill. */
function readingsText(flag: ReadingsFlag, end: bigint, bill: boolean): string | undefined {
  const counts = bill ? 'This bill counts' : 'Settling now counts';
  switch (flag.kind) {
    case 'no-meter':
      return `Missing readings: no meter was bound to this account in this slot. ${counts} 0 Wh used and 0 Wh delivered in this slot.`;
    case 'expired':
      return `Energy no longer kept: meters keep a slot's energy for 4,096 slots, and this slot's has been overwritten by a later one. ${counts} 0 Wh used and 0 Wh delivered in this slot.`;
    case 'missing':
      return `Missing readings: your meter has no reading inside this slot (it ended at ${formatClock(end)}${
        flag.latestTimestamp ? `; its last reading is from ${formatClock(flag.latestTimestamp)}` : '; it has never reported'
      }). ${counts} 0 Wh used and 0 Wh delivered here. A reading from after the slot that arrives before the slot is final is split into it in proportion to time; after that, this energy goes to later slots.`;
    case 'late':
      return `Late readings: your meter's last reading (${flag.latestTimestamp ? formatClock(flag.latestTimestamp) : 'none'}) is before the slot's end at ${formatClock(end)}. ${counts} only the energy up to that reading. A later reading that arrives before the slot is final adds the rest, interpolated to the slot's end; after that, the rest goes to later slots.`;
    default:
      return undefined;
  }
}

/** The flag shown before Settle for a slot past delivery with the account's unsettled position. */
function slotReadingsFlag(app: App, v: SlotView): TemplateResult | typeof nothing {
  if (!v.readings) return nothing;
  const sched = app.schedule()!;
  const end = slotEnd(sched, v.slot);
  const r = v.readings;
  const flag = readingsFlag(r.meter, r.hasReading, r.latestTimestamp, end, r.kept);
  const text = readingsText(flag, end, false);
  // A row of its own under the slot's row, so that the sentence is readable next to Settle.
  return html`<tr class="flag-row" data-testid="readings-flag" data-slot=${String(v.slot)} data-kind=${flag.kind}>
    <td colspan="8" class=${text ? 'warn-text small' : 'muted small'}><div class="flag-text">${text
      ? `⚠ Slot #${v.slot}: ${text}`
      : `Slot #${v.slot}: readings complete (a reading at or after the slot's end).`}</div></td>
  </tr>`;
}

function accountCard(app: App): TemplateResult {
  const s = app.state;
  const w = s.wallet;
  if (!w.account) {
    return html`<section class="card intro" data-testid="account-card">
      <h2>Your account</h2>
      <p>Connect your wallet to see your credits and meter and to trade. The market below updates live.</p>
    </section>`;
  }
  const me = s.me;
  if (!me) return html`<section class="card" data-testid="account-card"><h2>Your account</h2><p class="muted">Loading…</p></section>`;
  const registered = me.role !== 'none';
  return html`<section class="card" data-testid="account-card">
    <h2>Your account</h2>
    <div class="stats">
      <div class="stat" data-testid="registration">
        <span class="label">Registration</span>
        <span class="value">${registered ? (me.role === 'prosumer' ? 'Prosumer' : 'Consumer') : 'Not registered'}</span>
        <span class="hint">${registered
          ? me.role === 'prosumer'
            ? 'may buy and sell energy'
            : 'may buy energy'
          : 'ask the operator to register this account'}</span>
      </div>
      <div class="stat" data-testid="meter">
        <span class="label">Meter</span>
        <span class="value mono" title=${me.meter ?? ''}>${me.meter ? shortAddress(me.meter) : 'none bound'}</span>
        <span class="hint">${me.latestReading
          ? `last reading ${formatClock(me.latestReading.timestamp)}: in ${formatEnergy(me.latestReading.importWh)}, out ${formatEnergy(me.latestReading.exportWh)}`
          : me.meter
            ? 'no reading yet'
            : 'without a meter, delivery counts as zero'}</span>
      </div>
      <div class="stat" data-testid="wallet-credits">
        <span class="label">In your wallet</span>
        <span class="value">${formatCredits(me.walletCredits)}</span>
        <span class="hint">credit tokens, not yet in the market</span>
      </div>
      <div class="stat" data-testid="market-balance">
        <span class="label">In the market</span>
        <span class="value">${formatCredits(me.free)}</span>
        <span class="hint">free to trade · ${formatCredits(lockedTotal(app))} locked in orders</span>
      </div>
      ${me.debt > 0n
        ? html`<div class="stat bad" data-testid="debt">
            <span class="label">Debt to the grid</span>
            <span class="value">${formatCredits(me.debt)}</span>
            <span class="hint">repaid from your next deposit; no trading until then</span>
          </div>`
        : nothing}
    </div>
    <div class="row wrap money-forms">
      <form
        novalidate
        class="inline"
        data-testid="deposit-form"
        @submit=${(e: Event) => {
          e.preventDefault();
          const f = e.target as HTMLFormElement;
          const field = f.querySelector<HTMLInputElement>('input[name=amount]');
          try {
            const amount = parsePositiveCredits(String(new FormData(f).get('amount') ?? ''));
            markField(field, undefined);
            void app.deposit(amount).then((ok) => ok && f.reset());
          } catch (err) {
            markField(field, (err as Error).message);
            app.notify('error', (err as Error).message);
          }
        }}
      >
        <label>Deposit <input name="amount" inputmode="decimal" placeholder="credits" size="8" required /></label>
        <button type="submit" ?disabled=${!!app.cannotSend()}>Deposit</button>
      </form>
      <form
        novalidate
        class="inline"
        data-testid="withdraw-form"
        @submit=${(e: Event) => {
          e.preventDefault();
          const f = e.target as HTMLFormElement;
          const field = f.querySelector<HTMLInputElement>('input[name=amount]');
          try {
            const amount = parsePositiveCredits(String(new FormData(f).get('amount') ?? ''));
            markField(field, undefined);
            void app.withdraw(amount).then((ok) => ok && f.reset());
          } catch (err) {
            markField(field, (err as Error).message);
            app.notify('error', (err as Error).message);
          }
        }}
      >
        <label>Withdraw <input name="amount" inputmode="decimal" placeholder="credits" size="8" required /></label>
        <button type="submit" ?disabled=${!!app.cannotSend()}>Withdraw</button>
      </form>
      <p class="hint small">Deposits use a permit signature (EIP-2612): sign once, then one transaction.</p>
    </div>
  </section>`;
}

function phaseText(app: App, v: SlotView, sched: Schedule, now: bigint): TemplateResult {
  const phase = phaseOf(sched, v.slot, now);
  const secs = (t: bigint) => formatDuration(Number(t - now));
  switch (phase) {
    case 'open':
      return html`<span class="phase open">Open</span>
        <span class="countdown" data-testid="countdown">gate closes in ${secs(gateClosureTime(sched, v.slot))}</span>`;
    case 'gate-closed':
      return html`<span class="phase closed">Gate closed</span>
        <span class="countdown">delivery in ${secs(slotStart(sched, v.slot))}</span>`;
    case 'delivery':
      return html`<span class="phase delivery">Delivering</span>
        <span class="countdown">ends in ${secs(slotEnd(sched, v.slot))}</span>`;
    case 'grace':
      return html`<span class="phase grace">Meters reporting</span>
        <span class="countdown">settlement in ${secs(settlementOpensAt(sched, v.slot))}</span>`;
    default:
      void app;
      return html`<span class="phase settle">Settlement open</span>`;
  }
}

function totals(v: SlotView): { bid: bigint; ask: bigint } {
  return v.levels.reduce((a, l) => ({ bid: a.bid + l.bidWh, ask: a.ask + l.askWh }), { bid: 0n, ask: 0n });
}

function positionText(app: App, p: Position | undefined): TemplateResult | string {
  if (!p || (!p.bidWh && !p.askWh)) return '—';
  const tick = app.state.config!.priceTick;
  return html`${p.bidWh ? html`<div>Bid ${formatEnergy(p.bidWh)} ≤ ${formatPrice(p.bidPricePerKWh, tick, false)}</div>` : nothing}
  ${p.askWh ? html`<div>Ask ${formatEnergy(p.askWh)} ≥ ${formatPrice(p.askPricePerKWh, tick, false)}</div>` : nothing}
  ${p.settled ? html`<div class="muted">settled</div>` : nothing}`;
}

function slotsCard(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const sched = app.schedule()!;
  const now = app.now();
  const rows = s.slots.filter((v) => {
    const phase = phaseOf(sched, v.slot, now);
    const mine = v.position && (v.position.bidWh || v.position.askWh);
    return phase === 'open' || v.status !== 'empty' || mine;
  });
  const me = s.wallet.account;
  return html`<section class="card" data-testid="slots">
    <h2>Delivery slots</h2>
    <p class="hint small">
      Each slot lasts ${formatDuration(Number(c.slotLength))}; orders close ${formatDuration(Number(c.gateClosure))} before it
      starts; settlement opens ${formatDuration(Number(c.gracePeriod))} after it ends. ${c.payAsBid ? 'Pay-as-bid' : 'Everyone trades at one clearing price (pay-as-clear)'}.
    </p>
    <div class="table-wrap">
      <table class="slots">
        <thead>
          <tr><th>Slot</th><th>Delivery</th><th>Status</th><th class="num">Bids</th><th class="num">Asks</th><th>Cleared</th><th>Yours</th><th></th></tr>
        </thead>
        <tbody>
          ${repeat(
            rows,
            (v) => String(v.slot),
            (v) => {
              const phase = phaseOf(sched, v.slot, now);
              const t = totals(v);
              const selected = s.selectedSlot === v.slot;
              const pos = v.position;
              const canSettle =
                me && v.status === 'cleared' && phase === 'settlement' && pos && !pos.settled && (pos.bidWh || pos.askWh);
              return html`<tr class=${selected ? 'selected' : ''} data-testid="slot-row" data-slot=${String(v.slot)} data-phase=${phase} data-status=${v.status}>
                <td class="mono c-slot">#${v.slot}</td>
                <td class="nowrap c-time">${formatClock(slotStart(sched, v.slot))}–${formatClock(slotEnd(sched, v.slot))}</td>
                <td class="c-status">${phaseText(app, v, sched, now)}</td>
                <td class="num c-bids">${t.bid ? formatEnergy(t.bid) : '—'}</td>
                <td class="num c-asks">${t.ask ? formatEnergy(t.ask) : '—'}</td>
                <td class="c-result" data-testid="slot-result">${v.status === 'cleared'
                  ? v.clearedWh > 0n
                    ? html`<b>${formatPrice(v.clearingPerKWh, c.priceTick)}</b><br /><span class="small">${formatEnergy(v.clearedWh)} traded</span>`
                    : html`<span class="muted">cleared, no match</span>`
                  : phase === 'open'
                    ? html`<span class="muted">—</span>`
                    : v.status === 'open'
                      ? html`<span class="muted">not cleared yet</span>`
                      : html`<span class="muted">no orders</span>`}</td>
                <td class="small c-yours">${positionText(app, pos)}</td>
                <td class="actions">
                  ${phase === 'open'
                    ? html`<button class="small" @click=${() => {
                        s.selectedSlot = v.slot;
                        draft.slot = String(v.slot);
                        app.changed();
                      }}>Book</button>`
                    : nothing}
                  ${v.status === 'open' && phase !== 'open'
                    ? html`<button class="small" data-testid="clear" ?disabled=${!!app.cannotSend()} @click=${() => app.clearSlot(v.slot)}>Clear</button>`
                    : nothing}
                  ${canSettle
                    ? html`<button class="small" data-testid="settle" ?disabled=${!!app.cannotSend()} @click=${() => app.settleSlot(v.slot, [me!])}>Settle mine</button>`
                    : nothing}
                </td>
              </tr>${slotReadingsFlag(app, v)}`;
            },
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

function bookCard(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const sched = app.schedule()!;
  const now = app.now();
  const v = s.slots.find((x) => x.slot === s.selectedSlot);
  if (!v) return html`<section class="card" data-testid="book"><h2>Order book</h2><p class="muted">No slot selected.</p></section>`;
  const { bids, asks } = bookSides(v.levels);
  const clearing = computeClearing(v.levels);
  const maxCum = [...bids, ...asks].reduce((m, r) => (r.cumulativeWh > m ? r.cumulativeWh : m), 1n);
  const bar = (cum: bigint) => `${Math.max(2, Number((cum * 100n) / maxCum))}%`;
  const phase = phaseOf(sched, v.slot, now);
  return html`<section class="card" data-testid="book" data-slot=${String(v.slot)}>
    <h2>Order book · slot #${v.slot}</h2>
    <p class="hint small">
      Delivery ${formatClock(slotStart(sched, v.slot))}–${formatClock(slotEnd(sched, v.slot))};
      ${phase === 'open' ? html`gate closes in <b>${formatDuration(Number(gateClosureTime(sched, v.slot) - now))}</b>` : 'gate closed'}.
      Prices from ${formatPrice(v.feedInPerKWh, c.priceTick)} (grid feed-in) to ${formatPrice(v.retailPerKWh, c.priceTick)} (grid retail),
      in steps of ${formatPrice(c.priceTick, c.priceTick)}. Energy per price level, all participants together.
    </p>
    <div class="book">
      <div>
        <h3>Buy (bids)</h3>
        <table class="book-side bids" data-testid="book-bids">
          <thead><tr><th>Price</th><th class="num">Energy</th><th class="num">At or above</th></tr></thead>
          <tbody>
            ${bids.length === 0
              ? html`<tr><td colspan="3" class="muted">No bids yet</td></tr>`
              : bids.map(
                  (r) => html`<tr style="--depth:${bar(r.cumulativeWh)}">
                    <td>${formatPrice(r.pricePerKWh, c.priceTick, false)}</td>
                    <td class="num">${formatEnergy(r.energyWh)}</td>
                    <td class="num">${formatEnergy(r.cumulativeWh)}</td>
                  </tr>`,
                )}
          </tbody>
        </table>
      </div>
      <div>
        <h3>Sell (asks)</h3>
        <table class="book-side asks" data-testid="book-asks">
          <thead><tr><th>Price</th><th class="num">Energy</th><th class="num">At or below</th></tr></thead>
          <tbody>
            ${asks.length === 0
              ? html`<tr><td colspan="3" class="muted">No asks yet</td></tr>`
              : asks.map(
                  (r) => html`<tr style="--depth:${bar(r.cumulativeWh)}">
                    <td>${formatPrice(r.pricePerKWh, c.priceTick, false)}</td>
                    <td class="num">${formatEnergy(r.energyWh)}</td>
                    <td class="num">${formatEnergy(r.cumulativeWh)}</td>
                  </tr>`,
                )}
          </tbody>
        </table>
      </div>
    </div>
    <p class="indicative" data-testid="indicative">
      ${v.status === 'cleared'
        ? html`Cleared: <b>${formatEnergy(v.clearedWh)}</b> at <b>${formatPrice(v.clearingPerKWh, c.priceTick)}</b>.`
        : clearing.clearedWh > 0n
          ? html`If the gate closed now, <b>${formatEnergy(clearing.clearedWh)}</b> would trade at
              <b>${formatPrice(levelPrice(v.feedInPerKWh, c.priceTick, clearing.priceLevel), c.priceTick)}</b> (indicative).`
          : bids.length && asks.length
            ? html`No match yet: the highest bid is below the lowest ask.`
            : html`A trade needs both a bid and an ask.`}
    </p>
  </section>`;
}

/** The order horizon (seconds) that applies to `slot`: the one fixed when the slot was opened, else the
 *  market's current one; undefined while unknown (not read yet). */
function horizonOf(app: App, slot: bigint): bigint | undefined {
  return app.state.slots.find((v) => v.slot === slot)?.orderHorizon ?? app.state.orderHorizon;
}

/** Whether `slot` may take orders under its horizon at `now` (true while the horizon is unknown). */
function inHorizon(app: App, slot: bigint, now: bigint): boolean {
  const h = horizonOf(app, slot);
  return h === undefined || withinHorizon(app.schedule()!, slot, now, h);
}

/** The slots the form offers: open gate and within the order horizon (slots beyond it are not offered;
 *  a chosen slot stays listed, marked, so that the form never switches slots by itself). The default is
 *  the safe slot (slotchoice.ts) or, if that lies beyond the horizon, the last slot within it. */
function orderSlotOptions(app: App, now: bigint): { slots: bigint[]; chosen?: bigint } {
  const sched = app.schedule()!;
  if (draft.slot === undefined && app.state.head) {
    let slot = safeDefaultSlot(sched, now);
    const h = app.state.orderHorizon;
    if (h !== undefined && !withinHorizon(sched, slot, now, h)) {
      const last = lastSlotWithinHorizon(sched, now, h);
      if (gateOpen(sched, last, now)) slot = last;
    }
    draft.slot = String(slot);
  }
  const open = app.state.slots
    .filter((v) => phaseOf(sched, v.slot, now) === 'open' && inHorizon(app, v.slot, now))
    .map((v) => v.slot);
  const chosen = draft.slot !== undefined ? BigInt(draft.slot) : undefined;
  const slots = [...new Set([...open, ...(chosen !== undefined ? [chosen] : [])])].sort((x, y) => (x < y ? -1 : 1));
  return { slots, chosen };
}

function orderSummary(
  app: App,
  energy: bigint,
  price: bigint,
  retail: bigint,
  feedIn: bigint,
  premiums: Premiums,
): TemplateResult {
  const c = app.state.config!;
  const me = app.state.me;
  const lock = lockFor(draft.side, energy, price, retail, premiums);
  const missing = me && me.free < lock ? lock - me.free : 0n;
  const unusedPrice = feedIn - premiums.longPenaltyPerKWh;
  return html`${draft.side === 'bid'
      ? html`Buy up to <b>${formatEnergy(energy)}</b>, paying at most <b>${formatCredits(costOf(energy, price))}</b>
          (${formatPrice(price, c.priceTick)}). You pay the clearing price for what you get; what you use beyond it
          comes from the grid at ${formatPrice(retail, c.priceTick)}. Energy you buy but do not use goes back to the
          grid at the feed-in tariff less the imbalance penalty
          (${unusedPrice < 0n ? html`you pay ${formatPrice(-unusedPrice, c.priceTick)}` : formatPrice(unusedPrice, c.priceTick)}), so the
          bid also locks that penalty.`
      : html`Sell up to <b>${formatEnergy(energy)}</b> for at least ${formatPrice(price, c.priceTick)}
          (<b>${formatCredits(costOf(energy, price))}</b> if all of it trades). Locks
          <b>${formatCredits(lock)}</b> as collateral: energy you sell but do not deliver is bought from the grid at
          retail plus the imbalance premium, ${formatPrice(retail + premiums.shortPremiumPerKWh, c.priceTick)}.`}
    <br />Locks <b data-testid="order-lock">${formatCredits(lock)}</b> until settlement.
    ${missing > 0n
      ? html`<br /><span class="warn-text">Your free market balance is ${formatCredits(me!.free)}: ${formatCredits(missing)} will be deposited from your
          wallet first (one permit signature and one more transaction).</span>`
      : nothing}`;
}

/** The order form's slot field: the offered slots (see {@link orderSlotOptions}), the field's problem,
 *  and the order horizon in words with the first slot it keeps out. */
function slotField(app: App, slots: bigint[], now: bigint, slotError: string | undefined): TemplateResult {
  const s = app.state;
  const sched = app.schedule()!;
  const slotClosed = slotError !== undefined;
  const horizon = s.orderHorizon;
  // The first slot with an open gate that its horizon keeps out of the form (each slot keeps the horizon
  // it was opened with, so this is not simply the last slot within the market's current horizon).
  const farther = s.slots.find((x) => phaseOf(sched, x.slot, now) === 'open' && !inHorizon(app, x.slot, now))?.slot;
  return html`<label>Slot
      <select name="slot" data-testid="order-slot" .value=${draft.slot ?? ''} aria-invalid=${slotClosed ? 'true' : 'false'}
        aria-describedby=${slotClosed ? 'order-slot-error' : nothing}
        @change=${(e: Event) => {
          draft.slot = (e.target as HTMLSelectElement).value;
          s.selectedSlot = BigInt(draft.slot);
          app.changed();
        }}>
        ${repeat(
          slots,
          (o) => String(o),
          (o) => html`<option value=${String(o)} ?selected=${String(o) === draft.slot} ?disabled=${!gateOpen(sched, o, now) || !inHorizon(app, o, now)}>
            #${o} · ${formatClock(slotStart(sched, o))} · ${!inHorizon(app, o, now)
              ? 'beyond the order horizon'
              : gateOpen(sched, o, now)
                ? `closes in ${formatDuration(Number(gateClosureTime(sched, o) - now))}${closesSoon(sched, o, now) ? ' (closes soon)' : ''}`
                : 'gate closed'}
          </option>`,
        )}
      </select>
    </label>
    ${fieldError('order-slot-error', slotError)}
    ${horizon !== undefined
      ? html`<span class="hint small" data-testid="order-horizon">Orders are taken only for slots starting within
          ${formatHorizon(horizon)} of now (the operator's order horizon, so that nobody books far-future slots ahead
          of their prices)${farther !== undefined ? html`: slot #${farther} and later ones are not offered yet` : ''}.</span>`
      : nothing}`;
}

function orderForm(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const sched = app.schedule()!;
  const now = app.now();
  const me = s.me;
  const { slots, chosen } = orderSlotOptions(app, now);
  const v = s.slots.find((x) => x.slot === chosen);
  const retail = v?.retailPerKWh ?? s.defaultPrices?.retailPerKWh ?? 0n;
  const feedIn = v?.feedInPerKWh ?? s.defaultPrices?.feedInPerKWh ?? 0n;
  if (!draft.pricePrefilled && retail) {
    draft.price = formatPrice((retail + feedIn) / 2n - (((retail + feedIn) / 2n - feedIn) % c.priceTick), c.priceTick, false);
    draft.pricePrefilled = true;
  }
  const premiums = v && v.status !== 'cleared' ? v.premiums : (s.imbalance ?? NO_PREMIUMS);
  // The registered connection bounds the volume per slot (issue 14): checked here before anything is sent.
  const capacity = me && me.role !== 'none' ? (draft.side === 'bid' ? me.capacity.importWh : me.capacity.exportWh) : undefined;
  const energyError =
    errorOf(() => parseEnergyWh(draft.energy)) ??
    (capacity !== undefined && parseEnergyWh(draft.energy) > capacity
      ? `At most ${formatEnergy(capacity)} per slot: your registered ${draft.side === 'bid' ? 'import' : 'export'} power times the slot length.`
      : undefined);
  const priceError = retail ? errorOf(() => parsePrice(draft.price, c.priceTick, feedIn, retail)) : undefined;
  const beyond = chosen !== undefined && !inHorizon(app, chosen, now);
  const slotClosed = (chosen !== undefined && !gateOpen(sched, chosen, now)) || beyond;
  const slotError = beyond
    ? `${revertSentence({ name: 'BeyondHorizon', args: [chosen, slotStart(sched, chosen!), horizonOf(app, chosen!)] }, app.errorContext())} Choose an earlier slot; the page does not switch slots by itself.`
    : slotClosed
      ? `The gate of slot #${chosen} closed at ${formatClock(gateClosureTime(sched, chosen!))}. Choose another slot; the page does not switch slots by itself.`
      : undefined;
  const valid = !energyError && !priceError && !slotClosed && chosen !== undefined && !!retail;
  const summary = valid
    ? orderSummary(app, parseEnergyWh(draft.energy), parsePrice(draft.price, c.priceTick, feedIn, retail), retail, feedIn, premiums)
    : '';
  const consumer = me?.role === 'consumer';
  const why = app.cannotSend() ?? (me && me.role === 'none' ? 'This account is not registered.' : undefined);
  const input = (field: 'energy' | 'price') => (e: Event) => {
    draft[field] = (e.target as HTMLInputElement).value;
    app.changed();
  };
  return html`<section class="card" data-testid="order-form">
    <h2>Place an order</h2>
    <form
      novalidate
      @submit=${(e: Event) => {
        e.preventDefault();
        try {
          if (slotError) throw new Error(slotError);
          const energy = parseEnergyWh(draft.energy);
          const price = parsePrice(draft.price, c.priceTick, feedIn, retail);
          void app.placeOrder(draft.side, chosen!, energy, price);
        } catch (err) {
          app.notify('error', (err as Error).message);
        }
      }}
    >
      <div class="segmented" role="radiogroup" aria-label="Side">
        <label class=${draft.side === 'bid' ? 'on' : ''}>
          <input type="radio" name="side" value="bid" .checked=${draft.side === 'bid'} @change=${() => {
            draft.side = 'bid';
            app.changed();
          }} />Buy (bid)
        </label>
        <label class=${draft.side === 'ask' ? 'on' : ''} title=${consumer ? 'Only prosumers may sell' : ''}>
          <input type="radio" name="side" value="ask" data-testid="side-ask" .checked=${draft.side === 'ask'} ?disabled=${consumer} @change=${() => {
            draft.side = 'ask';
            app.changed();
          }} />Sell (ask)
        </label>
      </div>
      ${consumer ? html`<p class="hint small">Consumers buy only; selling needs a prosumer registration.</p>` : nothing}
      ${slotField(app, slots, now, slotError)}
      <div class="row two">
        <label>Energy (Wh)
          <input name="energy" data-testid="order-energy" inputmode="numeric" required .value=${draft.energy}
            aria-invalid=${energyError ? 'true' : 'false'} aria-describedby=${energyError ? 'order-energy-error' : nothing} @input=${input('energy')} />
          ${fieldError('order-energy-error', energyError)}
          ${capacity !== undefined && !energyError
            ? html`<span class="hint small" data-testid="order-capacity">at most ${formatEnergy(capacity)} per slot</span>`
            : nothing}
        </label>
        <label>Limit price (credits/kWh)
          <input name="price" data-testid="order-price" inputmode="decimal" required .value=${draft.price}
            aria-invalid=${priceError ? 'true' : 'false'} aria-describedby=${priceError ? 'order-price-error' : nothing} @input=${input('price')} />
          ${fieldError('order-price-error', priceError)}
        </label>
      </div>
      <p class="summary small" data-testid="order-summary">${summary}</p>
      <button type="submit" class="primary" data-testid="place-order" ?disabled=${!valid || !!why}>
        ${draft.side === 'bid' ? 'Place bid' : 'Place ask'}
      </button>
      ${why ? html`<p class="hint small">${why}</p>` : nothing}
    </form>
  </section>`;
}

function ownOrdersCard(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const sched = app.schedule()!;
  const now = app.now();
  if (!s.wallet.account) return html``;
  const rows: TemplateResult[] = [];
  for (const v of s.slots) {
    const p = v.position;
    if (!p || p.settled) continue;
    const phase = phaseOf(sched, v.slot, now);
    for (const side of ['bid', 'ask'] as const) {
      const wh = side === 'bid' ? p.bidWh : p.askWh;
      if (!wh) continue;
      const price = side === 'bid' ? p.bidPricePerKWh : p.askPricePerKWh;
      const fill = v.preview ? (side === 'bid' ? v.preview.boughtWh : v.preview.soldWh) : undefined;
      rows.push(html`<tr data-testid="own-order" data-slot=${String(v.slot)} data-side=${side}>
        <td class="mono" data-label="Slot">#${v.slot}</td>
        <td class="nowrap" data-label="Order">${side === 'bid' ? 'Buy' : 'Sell'} ${formatEnergy(wh)} ${side === 'bid' ? '≤' : '≥'} ${formatPrice(price, c.priceTick, false)}</td>
        <td class="num credits" data-label="Locked">${formatCredits(lockFor(side, wh, price, v.retailPerKWh, p.premiums), { unit: false })}</td>
        <td class="small" data-label="Status" data-testid="own-order-status">${phase === 'open'
          ? `open · closes in ${formatDuration(Number(gateClosureTime(sched, v.slot) - now))}`
          : v.status === 'cleared'
            ? v.preview && v.preview.boughtWh === 0n && v.preview.soldWh === 0n
              ? `cleared · unmatched: its lock comes back at settlement (Reclaim)`
              : `cleared · ${side === 'bid' ? 'bought' : 'sold'} ${formatEnergy(fill ?? 0n)}`
            : 'gate closed · awaiting clearing'}</td>
        <td data-label="">${phase === 'open'
          ? html`<button class="small" data-testid="cancel" ?disabled=${!!app.cannotSend()} @click=${() => app.cancelOrder(v.slot, side)}>Cancel</button>`
          : nothing}</td>
      </tr>`);
    }
  }
  const plan = app.reclaimPlan();
  const ready = plan.ready.reduce((a, r) => a + r.locked, 0n);
  return html`<section class="card" data-testid="own-orders">
    <h2>Your open orders</h2>
    <div class="row wrap reclaim">
      <button class="small" data-testid="reclaim" ?disabled=${!!app.cannotSend()} @click=${() => app.reclaim()}>Reclaim unmatched</button>
      <span class="hint small" data-testid="reclaim-hint">${plan.ready.length
        ? html`<b>${formatCredits(ready)}</b> locked in ${plan.ready.length} unmatched order${plan.ready.length > 1 ? 's' : ''} can be reclaimed now
            (one settlement transaction per slot).`
        : reclaimRefusal(plan)}</span>
    </div>
    ${rows.length === 0
      ? html`<p class="muted">No open orders.</p>`
      : html`<div class="table-wrap"><table class="cards">
          <thead><tr><th>Slot</th><th>Order (limit in credits/kWh)</th><th class="num">Locked (credits)</th><th>Status</th><th></th></tr></thead>
          <tbody>${rows}</tbody>
        </table></div>`}
  </section>`;
}

// ------------------------------------------------------------------ history view

/** Per settled slot: traded vs metered energy, the bill and its grid-only comparison, and the
 *  readings flag of each bill (what it rests on). */
function settlementsCard(app: App, settlements: SettlementRecord[]): TemplateResult {
  const sched = app.schedule()!;
  return html`<section class="card" data-testid="settlements">
      <h2>Settlement per slot</h2>
      <p class="hint small">
        Traded energy is compared with what your meter measured. Using more than you bought (or delivering less than you
        sold) is bought from the grid at retail; the opposite is sold to the grid at the feed-in tariff. The bill is what
        you paid in the slot, after sales; escrow coming back is not counted as income.
      </p>
      ${settlements.length === 0
        ? html`<p class="muted">No settlement yet.</p>`
        : html`<div class="table-wrap"><table class="settlements cards">
            <thead><tr>
              <th>Slot</th><th class="num">Bought / used</th><th class="num">Sold / delivered</th>
              <th class="num">From grid</th><th class="num">To grid</th><th class="num">Trades</th><th class="num">Grid</th>
              <th class="num">Bill</th><th class="num">Grid only</th><th class="num">Saved</th>
            </tr></thead>
            <tbody>${[...settlements].reverse().map((r) => {
              const b = r.bill;
              const flagText = readingsText(r.flag, slotEnd(sched, r.ev.slot), true);
              return html`<tr data-testid="settlement-row" data-slot=${String(r.ev.slot)}>
                <td class="mono" data-label="Slot">#${r.ev.slot}</td>
                <td class="num" data-label="Bought / used">${formatEnergy(r.ev.boughtWh)} / ${formatEnergy(r.ev.importWh)}</td>
                <td class="num" data-label="Sold / delivered">${formatEnergy(r.ev.soldWh)} / ${formatEnergy(r.ev.exportWh)}</td>
                <td class="num" data-label="From grid">${formatEnergy(b.fromGridWh)}</td>
                <td class="num" data-label="To grid">${formatEnergy(b.toGridWh)}</td>
                <td class="num credits" data-label="Trades">${formatCredits(b.tradeCost - b.tradeRevenue, { unit: false })}</td>
                <td class="num credits" data-label="Grid">${formatCredits(b.gridCharge - b.gridPayout, { unit: false })}</td>
                <td class="num credits" data-label="Bill" data-testid="bill"><b>${formatCredits(b.net, { unit: false })}</b></td>
                <td class="num credits" data-label="Grid only" data-testid="grid-only">${formatCredits(b.gridOnly, { unit: false })}</td>
                <td class="num credits ${b.savings >= 0n ? 'good-text' : 'bad-text'}" data-label="Saved" data-testid="savings">${formatCredits(b.savings, { unit: false, sign: true })}</td>
              </tr>${flagText
                ? html`<tr class="bill-flag" data-testid="bill-flag" data-slot=${String(r.ev.slot)} data-kind=${r.flag.kind}><td colspan="10" class="warn-text small">⚠ Slot #${r.ev.slot}: ${flagText}</td></tr>`
                : nothing}${b.consistent ? nothing : html`<tr><td colspan="10" class="warn-text small">The breakdown of slot #${r.ev.slot} does not add up to the amounts the contract reported (credited ${formatCredits(r.ev.credited)}, debited ${formatCredits(r.ev.debited)}).</td></tr>`}`;
            })}</tbody>
          </table></div>
          <p class="hint small">Amounts in credits; a negative bill is money earned. Prices of each slot are fixed when the operator opens it for orders.</p>`}
    </section>`;
}

/** The totals of the account's settled slots, and how many bills rest on missing or late readings. */
function billsSummary(app: App, settlements: SettlementRecord[]): TemplateResult {
  const s = app.state;
  const total = settlements.reduce(
    (a, r) => ({
      net: a.net + r.bill.net,
      gridOnly: a.gridOnly + r.bill.gridOnly,
      savings: a.savings + r.bill.savings,
      bought: a.bought + r.ev.boughtWh,
      sold: a.sold + r.ev.soldWh,
    }),
    { net: 0n, gridOnly: 0n, savings: 0n, bought: 0n, sold: 0n },
  );
  const flagged = settlements.filter((r) => r.flag.kind !== 'ok').length;
  return html`<section class="card" data-testid="history-summary">
      <h2>Your bills</h2>
      ${!s.wallet.account
        ? html`<p class="muted">Connect your wallet to see your settlements.</p>`
        : html`<div class="stats">
            <div class="stat"><span class="label">Settled slots</span><span class="value">${settlements.length}</span>
              <span class="hint">since block ${s.historyFrom ?? 0}</span></div>
            <div class="stat"><span class="label">Traded</span><span class="value small-value">bought ${formatEnergy(total.bought)} · sold ${formatEnergy(total.sold)}</span></div>
            <div class="stat"><span class="label">${total.net >= 0n ? 'You paid (net)' : 'You earned (net)'}</span>
              <span class="value" data-testid="total-net">${formatCredits(total.net < 0n ? -total.net : total.net)}</span>
              <span class="hint">trades and grid, after sales</span></div>
            <div class="stat"><span class="label">Grid only would ${total.gridOnly >= 0n ? 'cost' : 'pay you'}</span><span class="value">${formatCredits(total.gridOnly < 0n ? -total.gridOnly : total.gridOnly)}</span>
              <span class="hint">same meter readings, retail and feed-in</span></div>
            ${flagged
              ? html`<div class="stat bad" data-testid="flagged-bills"><span class="label">Bills on missing or late readings</span>
                  <span class="value">${flagged} of ${settlements.length}</span>
                  <span class="hint">flagged per slot below: their energy was not fully metered in the slot</span></div>`
              : nothing}
            <div class="stat ${total.savings >= 0n ? 'good' : 'bad'}" data-testid="total-savings"><span class="label">${total.savings >= 0n ? 'You saved' : 'Extra cost'}</span>
              <span class="value">${formatCredits(total.savings < 0n ? -total.savings : total.savings)}</span>
              <span class="hint">against a grid-only bill</span></div>
          </div>`}
    </section>`;
}

function historyView(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const sched = app.schedule()!;
  const cleared = [...s.cleared.values()].sort((a, b) => (a.slot < b.slot ? -1 : 1));
  const settlements = [...s.settlements.values()].sort((a, b) => (a.ev.slot < b.ev.slot ? -1 : 1));
  const slotTime = (slot: bigint) => Number(slotStart(sched, slot));
  const clock = (x: number) => formatClock(Math.round(x));
  const withTrades = cleared.filter((r) => r.clearedWh > 0n);
  const retail = s.defaultPrices?.retailPerKWh;
  const feedIn = s.defaultPrices?.feedInPerKWh;
  const priceSeries = [
    { name: 'Clearing price', className: 's-price', dots: true, points: withTrades.map((r) => ({ x: slotTime(r.slot), y: credits(r.pricePerKWh) })) },
  ];
  const priceRefs =
    retail !== undefined && feedIn !== undefined
      ? [
          { name: 'Grid retail (current default)', className: 's-retail', y: credits(retail) },
          { name: 'Grid feed-in (current default)', className: 's-feedin', y: credits(feedIn) },
        ]
      : [];
  const recentSettlements = settlements.slice(-24);
  return html`
    ${billsSummary(app, settlements)}
    <div class="grid">
      <div class="col">
        ${lineChart({
          title: 'Clearing prices over time',
          series: priceSeries,
          refs: priceRefs,
          timeAxis: true,
          xPad: Number(c.slotLength) * 3,
          formatX: clock,
          formatY: (y) => y.toFixed(Math.max(2, priceDecimals(c.priceTick))),
          yLabel: 'credits/kWh',
          empty: 'No slot has cleared with a trade yet.',
          testId: 'chart-prices',
        })}
        <section class="card" data-testid="cleared-slots">
          <h2>Cleared slots</h2>
          ${cleared.length === 0
            ? html`<p class="muted">None yet (since block ${s.historyFrom ?? 0}).</p>`
            : html`<div class="table-wrap"><table>
                <thead><tr><th>Slot</th><th>Delivery</th><th class="num">Price (credits/kWh)</th><th class="num">Volume</th></tr></thead>
                <tbody>${cleared.slice(-12).reverse().map(
                  (r) => html`<tr data-testid="cleared-row" data-slot=${String(r.slot)}>
                    <td class="mono">#${r.slot}</td>
                    <td>${formatClock(slotStart(sched, r.slot))}</td>
                    <td class="num">${r.clearedWh > 0n ? formatPrice(r.pricePerKWh, c.priceTick, false) : '—'}</td>
                    <td class="num">${r.clearedWh > 0n ? formatEnergy(r.clearedWh) : 'no match'}</td>
                  </tr>`,
                )}</tbody>
              </table></div>`}
        </section>
      </div>
      <div class="col">
        ${barChart({
          title: 'Your energy per slot',
          categories: recentSettlements.map((r) => `#${r.ev.slot}`),
          series: [
            { name: 'Bought in the market', className: 's-bought', values: recentSettlements.map((r) => Number(r.ev.boughtWh)) },
            { name: 'From the grid', className: 's-fromgrid', values: recentSettlements.map((r) => Number(r.bill.fromGridWh)) },
            { name: 'Sold in the market', className: 's-sold', values: recentSettlements.map((r) => -Number(r.ev.soldWh)) },
            { name: 'To the grid', className: 's-togrid', values: recentSettlements.map((r) => -Number(r.bill.toGridWh)) },
          ],
          formatY: (y) => `${Math.round(y)}`,
          yLabel: 'Wh (in + / out −)',
          empty: s.wallet.account ? 'No settled slot yet.' : 'Connect your wallet to see your energy.',
          testId: 'chart-flows',
        })}
        ${lineChart({
          title: s.readings.length
            ? `Your meter readings: energy since ${clock(Number(s.readings[0].timestamp))} (counters then: in ${formatEnergy(s.readings[0].importWh)}, out ${formatEnergy(s.readings[0].exportWh)})`
            : 'Your meter readings',
          series: [
            { name: 'Imported since the first reading', className: 's-import', dots: s.readings.length < 40, points: increaseSinceFirst(s.readings.map((r) => ({ x: Number(r.timestamp), y: Number(r.importWh) }))) },
            { name: 'Exported since the first reading', className: 's-export', dots: s.readings.length < 40, points: increaseSinceFirst(s.readings.map((r) => ({ x: Number(r.timestamp), y: Number(r.exportWh) }))) },
          ],
          timeAxis: true,
          xPad: Number(c.slotLength),
          formatX: clock,
          formatY: compactNumber,
          yLabel: 'Wh',
          empty: s.me?.meter ? 'Your meter has not reported yet.' : 'No meter bound to this account.',
          testId: 'chart-readings',
        })}
      </div>
    </div>
    ${settlementsCard(app, settlements)}
  `;
}

// ------------------------------------------------------------------ operator view

/** An input error that names the form field it is about (for aria-invalid). */
class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** Runs a parser on a form field; its error names the field. */
function fieldOf<T>(form: FormData, name: string, parse: (text: string) => T): T {
  try {
    return parse(String(form.get(name) ?? ''));
  } catch (err) {
    throw new FieldError(name, (err as Error).message);
  }
}

function addressOf(form: FormData, name: string, what: string): Address {
  const v = String(form.get(name) ?? '').trim();
  if (v === '') throw new FieldError(name, `Enter the ${what}; it is required.`);
  if (!isAddress(v, { strict: false })) throw new FieldError(name, `The ${what} "${v}" is not an Ethereum address.`);
  return getAddress(v);
}

function opForm(
  app: App,
  testId: string,
  title: string,
  fields: TemplateResult,
  button: string,
  action: (f: FormData) => Promise<boolean> | void,
): TemplateResult {
  return html`<form
    class="op"
    novalidate
    data-testid=${testId}
    @submit=${(e: Event) => {
      e.preventDefault();
      const form = e.target as HTMLFormElement;
      for (const i of form.querySelectorAll('input')) markField(i, undefined);
      try {
        const r = action(new FormData(form));
        if (r) void r.then((ok) => ok && form.reset());
      } catch (err) {
        const field = (err as FieldError).field;
        if (field) markField(form.querySelector<HTMLInputElement>(`input[name=${field}]`), (err as Error).message);
        app.notify('error', (err as Error).message);
      }
    }}
  >
    <h3>${title}</h3>
    ${fields}
    <button type="submit" ?disabled=${!!app.cannotSend()}>${button}</button>
  </form>`;
}

/** The participant the operator asked to remove, waiting for confirmation. */
let pendingRemoval: Address | undefined;

function removalConfirm(app: App): TemplateResult | typeof nothing {
  const a = pendingRemoval;
  if (!a) return nothing;
  const p = app.state.participants.get(a);
  return html`<div class="confirm card" role="alertdialog" aria-labelledby="confirm-remove-title" data-testid="confirm-remove">
    <h3 id="confirm-remove-title">Remove ${shortAddress(a)}?</h3>
    <p class="small">
      <span class="mono">${a}</span> can no longer place orders${p?.meters.length ? html` and its meter${p.meters.length > 1 ? 's' : ''}
      ${p.meters.map((m) => html`<span class="mono">${shortAddress(m)}</span> `)} will be unbound` : ''}. Orders already placed are
      still settled. Registering it again is possible.
    </p>
    <div class="row">
      <button class="danger" data-testid="confirm-remove-yes" ?disabled=${!!app.cannotSend()} @click=${() => {
        pendingRemoval = undefined;
        void app.operator(`Remove ${shortAddress(a)}`, { ...app.contracts.registry, functionName: 'removeParticipant', args: [a] });
      }}>Remove</button>
      <button data-testid="confirm-remove-no" @click=${() => {
        pendingRemoval = undefined;
        app.notify('info', `${shortAddress(a)} stays registered.`);
      }}>Keep</button>
    </div>
  </div>`;
}

function participantsCard(app: App): TemplateResult {
  const ps = [...app.state.participants.values()].sort((x, y) => (x.account < y.account ? -1 : 1));
  return html`<section class="card" data-testid="participants">
    <h2>Participants and meters</h2>
    <p class="hint small">
      From the registry's events since block ${app.state.historyFrom ?? 0} (accounts registered at genesis have no event:
      use <i>Look up</i> for them).
    </p>
    ${ps.length === 0
      ? html`<p class="muted">No registration in this window.</p>`
      : html`<div class="table-wrap"><table class="cards">
          <thead><tr><th>Account</th><th>Role</th><th>Meters</th><th></th></tr></thead>
          <tbody>${ps.map(
            (p) => html`<tr data-testid="participant" data-account=${p.account}>
              <td data-label="Account" class="mono">${p.account}</td>
              <td data-label="Role">${p.role}</td>
              <td data-label="Meters" class="mono">${p.meters.length ? p.meters.map((m) => html`<div>${m}</div>`) : '—'}</td>
              <td><button class="small" data-testid="participant-remove" ?disabled=${!!app.cannotSend()} @click=${() => {
                pendingRemoval = p.account;
                app.changed();
              }}>Remove…</button></td>
            </tr>`,
          )}</tbody>
        </table></div>`}
  </section>`;
}

function operatorView(app: App): TemplateResult {
  const s = app.state;
  const c = s.config!;
  const me = s.me;
  if (!me?.isOperator) {
    return html`<section class="card" data-testid="operator"><h2>Operator</h2>
      <p>${s.wallet.account ? 'This account is not an operator of the registry.' : 'Connect an operator account.'}</p></section>
      ${microgridCard(app)}`;
  }
  return html`<section class="card" data-testid="operator">
      <h2>Operator</h2>
      <p class="hint small">
        Current default tariffs: retail ${s.defaultPrices ? formatPrice(s.defaultPrices.retailPerKWh, c.priceTick) : '…'}, feed-in
        ${s.defaultPrices ? formatPrice(s.defaultPrices.feedInPerKWh, c.priceTick) : '…'}; price step ${formatPrice(c.priceTick, c.priceTick)}.
        A slot keeps the tariffs in force when the operator opens it for orders (only open slots take orders). Grid account <code>${c.grid}</code>.
      </p>
      <div class="op-grid">${participantForms(app)} ${tariffForms(app)} ${mintForm(app, me.isMinter)} ${lookupForm(app)}</div>
    </section>
    ${microgridCard(app)} ${participantsCard(app)}`;
}

/** The operator's forms for participants and meters: register, remove (confirmed), bind, unbind. */
function participantForms(app: App): TemplateResult {
  const k = app.contracts;
  return html`
    ${opForm(
      app,
      'op-register',
      'Register a participant',
      html`<label>Account <input name="account" placeholder="0x…" required /></label>
        <label>Role <select name="role"><option value="1">Consumer (buys)</option><option value="2">Prosumer (buys and sells)</option></select></label>`,
      'Register',
      (f) => {
        const a = addressOf(f, 'account', 'account');
        return app.operator(`Register ${shortAddress(a)}`, { ...k.registry, functionName: 'registerParticipant', args: [a, Number(f.get('role'))] });
      },
    )}
    ${opForm(
      app,
      'op-remove',
      'Remove a participant',
      html`<label>Account <input name="account" placeholder="0x…" required /></label>
        <p class="hint small">Orders already placed are still settled; the meter is unbound.</p>`,
      'Remove',
      (f) => {
        pendingRemoval = addressOf(f, 'account', 'account');
        app.changed();
      },
    )}
    ${removalConfirm(app)}
    ${opForm(
      app,
      'op-bind',
      'Bind a meter',
      html`<label>Meter key address <input name="meter" placeholder="0x…" required /></label>
        <label>Participant <input name="participant" placeholder="0x…" required /></label>`,
      'Bind meter',
      (f) => {
        const m = addressOf(f, 'meter', 'meter');
        const p = addressOf(f, 'participant', 'participant');
        return app.operator(`Bind meter ${shortAddress(m)}`, { ...k.registry, functionName: 'bindMeter', args: [m, p] });
      },
    )}
    ${opForm(
      app,
      'op-unbind',
      'Unbind a meter',
      html`<label>Meter key address <input name="meter" placeholder="0x…" required /></label>`,
      'Unbind meter',
      (f) => {
        const m = addressOf(f, 'meter', 'meter');
        return app.operator(`Unbind meter ${shortAddress(m)}`, { ...k.registry, functionName: 'unbindMeter', args: [m] });
      },
    )}`;
}

/** A price field of an operator form, in credits/kWh. */
const priceField = (f: FormData, name: string, what: string) => fieldOf(f, name, (t) => parseDecimal(t, 18, what));

/** The operator's tariff forms: default tariffs, and one slot's time-of-use tariffs. */
function tariffForms(app: App): TemplateResult {
  const k = app.contracts;
  return html`
    ${opForm(
      app,
      'op-tariffs',
      'Set default tariffs',
      html`<div class="row two">
          <label>Retail (credits/kWh) <input name="retail" inputmode="decimal" required /></label>
          <label>Feed-in (credits/kWh) <input name="feedin" inputmode="decimal" required /></label>
        </div>`,
      'Set tariffs',
      (f) => {
        const r = priceField(f, 'retail', 'retail price');
        const fi = priceField(f, 'feedin', 'feed-in tariff');
        return app.operator('Set default tariffs', { ...k.registry, functionName: 'setDefaultPrices', args: [r, fi] });
      },
    )}
    ${opForm(
      app,
      'op-slot-tariffs',
      'Time-of-use tariffs for one slot',
      html`<label>Slot <input name="slot" inputmode="numeric" required /></label>
        <div class="row two">
          <label>Retail (credits/kWh) <input name="retail" inputmode="decimal" required /></label>
          <label>Feed-in (credits/kWh) <input name="feedin" inputmode="decimal" required /></label>
        </div>`,
      'Set slot tariffs',
      (f) => {
        const slot = fieldOf(f, 'slot', (t) => parseDecimal(t, 0, 'slot'));
        const r = priceField(f, 'retail', 'retail price');
        const fi = priceField(f, 'feedin', 'feed-in tariff');
        return app.slotTariffProblem(slot).then((problem) => {
          if (problem) {
            app.notify('error', problem);
            return false;
          }
          return app.operator(`Set tariffs of slot ${slot}`, { ...k.registry, functionName: 'setSlotPrices', args: [slot, r, fi] });
        });
      },
    )}`;
}

/** The operator's mint form, with a warning when the account lacks the minter role. */
function mintForm(app: App, isMinter: boolean): TemplateResult {
  const k = app.contracts;
  return html`
    ${opForm(
      app,
      'op-mint',
      'Mint credits',
      html`<label>To <input name="to" placeholder="0x…" required /></label>
        <label>Amount (credits) <input name="amount" inputmode="decimal" required /></label>
        ${isMinter ? nothing : html`<p class="warn-text small">This account lacks the token’s minter role.</p>`}`,
      'Mint',
      (f) => {
        const to = addressOf(f, 'to', 'recipient');
        const amount = fieldOf(f, 'amount', (t) => parsePositiveCredits(t));
        return app.operator(`Mint ${formatCredits(amount)} to ${shortAddress(to)}`, { ...k.token, functionName: 'mint', args: [to, amount] });
      },
    )}`;
}

/** The operator's account lookup: role, meter, wallet and market balances. */
function lookupForm(app: App): TemplateResult {
  const lk = app.state.lookup;
  return html`
    <form
      class="op"
      data-testid="op-lookup"
      @submit=${(e: Event) => {
        e.preventDefault();
        try {
          void app.lookupAccount(addressOf(new FormData(e.target as HTMLFormElement), 'account', 'account'));
        } catch (err) {
          app.notify('error', (err as Error).message);
        }
      }}
    >
      <h3>Look up an account</h3>
      <label>Account <input name="account" placeholder="0x…" required /></label>
      <button type="submit">Look up</button>
      ${lk
        ? html`<dl class="lookup" data-testid="lookup-result">
            <dt>Account</dt><dd class="mono">${lk.address}</dd>
            <dt>Role</dt><dd>${lk.role === 'none' ? 'not registered' : lk.role}${lk.isOperator ? ' · operator' : ''}</dd>
            <dt>Meter</dt><dd class="mono">${lk.meter ?? 'none'}</dd>
            <dt>Wallet</dt><dd>${formatCredits(lk.walletCredits)}</dd>
            <dt>Market</dt><dd>${formatCredits(lk.free)} free${lk.debt ? html`, <span class="bad-text">${formatCredits(lk.debt)} debt</span>` : nothing}</dd>
          </dl>`
        : nothing}
    </form>`;
}

// ------------------------------------------------------------------ microgrid (operator view)

/** The microgrid: the PCC's limits, the islanded state and its band, the community assets' state in the
 *  latest reported slot, totals and a chart and table of the recent slots' reports; live (subscription). */
function microgridCard(app: App): TemplateResult {
  const mg = app.state.microgrid;
  const c = app.state.config!;
  const limits = mg.limits ?? { importW: NO_CONNECTION_LIMIT, exportW: NO_CONNECTION_LIMIT };
  const islanded = mg.island?.islanded ?? false;
  const flow = flowLabels(islanded);
  const latest = latestReport(mg.reports);
  return html`<section class="card" data-testid="microgrid">
    <h2>Microgrid ${mg.island ? html`<span class="badge ${islanded ? 'warn' : ''}" data-testid="microgrid-mode">${islanded ? 'islanded' : 'grid-connected'}</span>` : nothing}</h2>
    <p data-testid="pcc-limits">
      Connection at the point of common coupling (PCC): import limit <b data-testid="pcc-import-limit">${mg.limits ? limitLabel(limits.importW) : '…'}</b>,
      export limit <b data-testid="pcc-export-limit">${mg.limits ? limitLabel(limits.exportW) : '…'}</b>.
    </p>
    ${islanded
      ? html`<p class="warn-text" data-testid="island">
          Islanded: no grid. The market's grid account stands for the community's balancing account, and the flow at the
          PCC is energy drawn from and fed into the community's own assets (battery, genset, PV plant). Prices lie within
          the band <b data-testid="island-band">${bandLabel(mg.island!.floorPerKWh, mg.island!.vollPerKWh, c.priceTick)}</b>
          (feed-in floor … value of lost load).
        </p>`
      : nothing}
    ${mg.error ? html`<p class="warn-text small" data-testid="microgrid-error">${mg.error}</p>` : nothing}
    ${latest ? microgridReports(app, latest, limits, flow) : html`<p class="muted" data-testid="microgrid-empty">${mg.loaded ? 'No microgrid report yet.' : 'Reading the microgrid reports…'}</p>`}
    <p class="hint small">
      Reported by the operator per delivered slot (what the meters cannot measure); a later report for a slot replaces
      the earlier one. Shown: ${mg.reports.size} reported slot${mg.reports.size === 1 ? '' : 's'} (at most the last ${MICROGRID_SLOTS})${mg.live ? ', updated live' : ''}.
    </p>
  </section>`;
}

/** The community assets in the latest slot, the totals, the charts and the table of reported slots. */
function microgridReports(
  app: App,
  latest: ReportRecord,
  limits: { importW: number; exportW: number },
  flow: { import: string; export: string },
): TemplateResult {
  const mg = app.state.microgrid;
  const r = latest.report;
  const storage = storageText(r);
  const t = microgridTotals(mg.reports, limits);
  const rows = microgridRows(mg.reports, limits);
  const oldestFirst = [...rows].reverse();
  const refs = [
    ...(hasLimit(limits.importW) ? [{ name: 'Import limit', className: 's-retail', y: limits.importW }] : []),
    ...(hasLimit(limits.exportW) ? [{ name: 'Export limit', className: 's-feedin', y: limits.exportW }] : []),
  ];
  return html`
    <dl class="lookup" data-testid="microgrid-assets">
      <dt>Latest slot</dt><dd>#${latest.slot}</dd>
      <dt>Community storage</dt><dd data-testid="microgrid-storage">${storage.text}</dd>
      <dt>Genset output</dt><dd data-testid="microgrid-genset">${formatEnergy(r.generatorWh)}</dd>
    </dl>
    <p data-testid="microgrid-totals">
      Over ${t.slots} reported slot${t.slots === 1 ? '' : 's'}: ${flow.import.toLowerCase()} ${formatEnergy(t.importWh)},
      ${flow.export.toLowerCase()} ${formatEnergy(t.exportWh)}, PV curtailed <b>${formatEnergy(t.curtailedWh)}</b>, load shed
      (unserved) <b class=${t.shedWh ? 'bad-text' : ''}>${formatEnergy(t.shedWh)}</b>, genset ${formatEnergy(t.generatorWh)}.
      ${t.overImport || t.overExport
        ? html`<span class="bad-text">Peaks over the limit: ${t.overImport} import, ${t.overExport} export.</span>`
        : nothing}
    </p>
    <div class="mg-charts">
      ${lineChart({
        title: 'Peak power at the PCC against its limits',
        series: [
          { name: `Peak ${flow.import.toLowerCase()}`, className: 's-import', dots: true, points: oldestFirst.map((x) => ({ x: Number(x.slot), y: mg.reports.get(x.slot)!.report.peakImportW })) },
          { name: `Peak ${flow.export.toLowerCase()}`, className: 's-export', dots: true, points: oldestFirst.map((x) => ({ x: Number(x.slot), y: mg.reports.get(x.slot)!.report.peakExportW })) },
        ],
        refs,
        formatX: (x) => (Number.isInteger(x) && x >= 0 ? `#${x}` : ''),
        formatY: compactNumber,
        yLabel: 'W',
        empty: 'No microgrid report yet.',
        xPad: 1,
        yFromZero: true,
        testId: 'microgrid-peaks-chart',
      })}
      ${barChart({
        title: 'Energy at the PCC per slot',
        categories: oldestFirst.map((x) => `#${x.slot}`),
        series: [
          { name: flow.import, className: 's-fromgrid', values: oldestFirst.map((x) => x.importWh) },
          { name: flow.export, className: 's-togrid', values: oldestFirst.map((x) => -x.exportWh) },
        ],
        formatY: compactNumber,
        yLabel: 'Wh',
        empty: 'No microgrid report yet.',
        testId: 'microgrid-energy-chart',
      })}
    </div>
    ${microgridTable(rows, flow)}`;
}

/** The reported slots, newest first: flow and peaks against the limits, curtailment, shed, assets. */
function microgridTable(rows: ReturnType<typeof microgridRows>, flow: { import: string; export: string }): TemplateResult {
  const peak = (p: { text: string; over: boolean }) => html`<span class=${p.over ? 'bad-text' : ''}>${p.text}${p.over ? ' (over the limit)' : ''}</span>`;
  return html`<div class="table-wrap"><table class="cards" data-testid="microgrid-table">
    <thead><tr>
      <th>Slot</th><th>${flow.import}</th><th>${flow.export}</th><th>Peak import</th><th>Peak export</th>
      <th>PV curtailed</th><th>Load shed</th><th>Storage at the end</th><th>Genset</th>
    </tr></thead>
    <tbody>${repeat(
      rows,
      (x) => x.slot.toString(),
      (x) => html`<tr data-testid="microgrid-row" data-slot=${x.slot.toString()}>
        <td data-label="Slot">#${x.slot}</td>
        <td data-label=${flow.import} data-testid="mg-import">${formatEnergy(x.importWh)}</td>
        <td data-label=${flow.export} data-testid="mg-export">${formatEnergy(x.exportWh)}</td>
        <td data-label="Peak import" data-testid="mg-peak-import">${peak(x.peakImport)}</td>
        <td data-label="Peak export" data-testid="mg-peak-export">${peak(x.peakExport)}</td>
        <td data-label="PV curtailed" data-testid="mg-curtailed">${formatEnergy(x.curtailedWh)}</td>
        <td data-label="Load shed" data-testid="mg-shed" class=${x.shedWh ? 'bad-text' : ''}>${formatEnergy(x.shedWh)}</td>
        <td data-label="Storage at the end" data-testid="mg-storage">${x.storage}</td>
        <td data-label="Genset" data-testid="mg-genset">${formatEnergy(x.generatorWh)}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}
