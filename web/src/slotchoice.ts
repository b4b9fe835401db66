// Which slot the order form offers by default, and whether a slot's gate is still open. The form never
// switches slots by itself: it defaults once, and when the chosen slot's gate closes it says so.

import { type Schedule, firstOpenSlot, gateClosureTime } from './market';

/** A slot is only offered by default if its gate closes at least this long from now. An order with a
 *  deposit takes three wallet prompts (permit signature, deposit, order); people need roughly 5–15 s
 *  per prompt to read and confirm, so 45 s leaves room for all three without the gate closing in
 *  between. Slots closing sooner can still be chosen by hand (they are marked "closes soon"). */
export const PROMPT_MARGIN_S = 45n;

/** The first slot whose gate closes at least `margin` seconds after `now`. */
export function safeDefaultSlot(s: Schedule, now: bigint, margin = PROMPT_MARGIN_S): bigint {
  let slot = firstOpenSlot(s, now);
  while (gateClosureTime(s, slot) - now < margin) slot += 1n;
  return slot;
}

/** Whether orders for `slot` are still accepted at `now`. */
export const gateOpen = (s: Schedule, slot: bigint, now: bigint): boolean => now < gateClosureTime(s, slot);

/** Whether the gate of `slot` closes within the prompt margin. */
export const closesSoon = (s: Schedule, slot: bigint, now: bigint, margin = PROMPT_MARGIN_S): boolean =>
  gateOpen(s, slot, now) && gateClosureTime(s, slot) - now < margin;
