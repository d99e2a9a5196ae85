// Redis' integer rules, shared by the command parser (arguments) and the apply
// (stored values for INCR): a strict, canonical base-10 int64 as string2ll.

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
/** Redis' wording when a word is not a canonical int64. */
export const NOT_AN_INTEGER = 'value is not an integer or out of range';

/** The int64 `bytes` spell in canonical base 10, or undefined if they do not. */
export function parseInt64(bytes: Buffer): bigint | undefined {
  const text = bytes.length <= 20 ? bytes.toString('latin1') : '';
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined;
  const n = BigInt(text);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}
