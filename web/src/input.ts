// Honest input: what the user typed is either read exactly as written or refused with a sentence.
// Nothing is reinterpreted: a decimal comma ("1,5") is refused with a hint, never read as 15; an
// empty required field is refused, never filled with a default; thousands separators are refused
// too, because "1,500" could mean 1.5 or 1500 depending on the locale.

/** A parse result: the value, or the sentence naming the problem. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** Parses a non-negative decimal with at most `decimals` fraction digits into a fixed-point integer
 *  (value × 10^decimals). `what` names the field in the sentences ("price", "amount"). */
export function parseFixed(text: string, decimals: number, what: string): Parsed<bigint> {
  const t = text.trim();
  if (t === '') return fail(`Enter the ${what}; it is required.`);
  if (/^\d*,\d*$/.test(t) && /\d/.test(t)) {
    return fail(`The ${what} "${t}" has a comma: write decimals with a point (${t.replace(',', '.')}).`);
  }
  if (/[,\s_']/.test(t)) return fail(`The ${what} "${t}" contains separators: write digits only, with a point for decimals.`);
  if (t.startsWith('-')) return fail(`The ${what} cannot be negative.`);
  if (!/^\d+(\.\d*)?$|^\.\d+$/.test(t)) return fail(`The ${what} "${t}" is not a number.`);
  const [whole = '', frac = ''] = t.split('.');
  if (frac.length > decimals) {
    return fail(decimals === 0 ? `The ${what} must be a whole number.` : `The ${what} has more than ${decimals} decimals.`);
  }
  const value = BigInt(whole || '0') * 10n ** BigInt(decimals) + BigInt((frac + '0'.repeat(decimals)).slice(0, decimals) || '0');
  return { ok: true, value };
}

/** Like parseFixed, but refuses zero ("mint 0" does nothing). */
export function parsePositive(text: string, decimals: number, what: string): Parsed<bigint> {
  const r = parseFixed(text, decimals, what);
  if (r.ok && r.value === 0n) return fail(`The ${what} must be more than zero.`);
  return r;
}

/** Returns the value or throws the sentence (for form handlers). */
export function must<T>(r: Parsed<T>): T {
  if (!r.ok) throw new InputError(r.error);
  return r.value;
}

/** An input error: a sentence for the user, not a bug. */
export class InputError extends Error {}

/** Marks a form field as invalid (aria-invalid + a message tied with aria-describedby) or valid. */
export function markField(input: HTMLInputElement | null, error: string | undefined): void {
  if (!input) return;
  const id = `${input.form?.dataset.testid ?? 'f'}-${input.name}-error`;
  let msg = input.form?.querySelector<HTMLElement>(`[id="${id}"]`) ?? null;
  if (error) {
    input.setAttribute('aria-invalid', 'true');
    if (!msg) {
      msg = document.createElement('span');
      msg.id = id;
      msg.className = 'field-error small';
      msg.setAttribute('role', 'alert');
      input.insertAdjacentElement('afterend', msg);
    }
    msg.textContent = error;
    input.setAttribute('aria-describedby', id);
  } else {
    input.removeAttribute('aria-invalid');
    input.removeAttribute('aria-describedby');
    msg?.remove();
  }
}
