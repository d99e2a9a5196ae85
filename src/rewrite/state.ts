// The local sweep rows of SPEC §11 in the store's internal space, and their
// codecs. Both are node-local (never replicated: each member sweeps its own
// copy):
//
//   !encryption|rewrite|cursor|<key_id>|cleartext   store_key of the last version handled
//   !encryption|rewrite|done|<key_id>|cleartext     JSON SweepDone, written when the sweep ends
//
// A cursor row exists only while a sweep of its target is unfinished; the
// batch that writes the done row deletes it.

import { sealError } from '../errors/index.js';
import { rewriteCursorKey, type Store } from '../store/index.js';

export type SweepTarget = { readonly keyId: number } | { readonly cleartext: true };

/** What a finished sweep recorded (JSON field names as operators see them). */
export interface SweepDone {
  /** ISO time the sweep finished. */
  readonly finished: string;
  readonly scanned: number;
  readonly rewritten: number;
  readonly skipped: number;
  readonly rewritten_bytes: number;
  /** The storage key_id the versions were re-sealed under. */
  readonly active_key_id: number;
}

export interface SweepState {
  readonly target: SweepTarget;
  /** Store key of the last version handled by an unfinished sweep. */
  readonly cursor?: Buffer;
  readonly done?: SweepDone;
}

const PREFIX = '!encryption|rewrite|';
const CLEARTEXT = 'cleartext';

export function checkTarget(target: SweepTarget): void {
  if (typeof target !== 'object' || target === null) throw new TypeError('a sweep target is { keyId } or { cleartext: true }');
  if ('cleartext' in target) {
    if (target.cleartext !== true) throw new TypeError('a cleartext sweep target is { cleartext: true }');
    return;
  }
  if (!Number.isInteger(target.keyId) || target.keyId < 1 || target.keyId > 0xffffffff) throw new RangeError(`a sweep key_id is a uint32 other than 0, got ${String(target.keyId)}`);
}

/** 'key_id 3' or 'cleartext', for progress and messages. */
export function describeTarget(target: SweepTarget): string {
  return 'cleartext' in target ? CLEARTEXT : `key_id ${target.keyId}`;
}

function targetName(target: SweepTarget): string {
  return 'cleartext' in target ? CLEARTEXT : String(target.keyId);
}

export function cursorKey(target: SweepTarget): Buffer {
  return 'cleartext' in target ? Buffer.from(`${PREFIX}cursor|${CLEARTEXT}`) : rewriteCursorKey(target.keyId);
}

export function doneKey(target: SweepTarget): Buffer {
  return Buffer.from(`${PREFIX}done|${targetName(target)}`);
}

export function encodeDone(done: SweepDone): Buffer {
  return Buffer.from(JSON.stringify(done));
}

function decodeDone(bytes: Uint8Array, where: string): SweepDone {
  try {
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as SweepDone;
    if (typeof parsed.finished !== 'string' || !Number.isInteger(parsed.rewritten) || !Number.isInteger(parsed.active_key_id)) throw new Error('missing fields');
    return parsed;
  } catch (err) {
    throw sealError('ErrStoreCorrupt', `the sweep row ${where} is not a done record`, err);
  }
}

/** The cursor and done rows of one target. */
export async function readSweepState(store: Store, target: SweepTarget): Promise<{ cursor?: Buffer; done?: SweepDone }> {
  checkTarget(target);
  const [cursor, done] = await Promise.all([store.getInternal(cursorKey(target)), store.getInternal(doneKey(target))]);
  return {
    ...(cursor === undefined ? {} : { cursor }),
    ...(done === undefined ? {} : { done: decodeDone(done, doneKey(target).toString()) }),
  };
}

/** Every target with a cursor or done row, in key_id order then cleartext (retire-dek and status). */
export async function listSweepStates(store: Store): Promise<SweepState[]> {
  const byTarget = new Map<string, { target: SweepTarget; cursor?: Buffer; done?: SweepDone }>();
  for (const { key, value } of await store.scanInternal(Buffer.from(PREFIX))) {
    const [kind, name, ...rest] = key.subarray(PREFIX.length).toString('latin1').split('|');
    if ((kind !== 'cursor' && kind !== 'done') || name === undefined || rest.length > 0) continue;
    const target: SweepTarget | undefined = name === CLEARTEXT ? { cleartext: true } : /^[1-9]\d{0,9}$/.test(name) && Number(name) <= 0xffffffff ? { keyId: Number(name) } : undefined;
    if (target === undefined) continue;
    const state = byTarget.get(name) ?? { target };
    if (kind === 'cursor') state.cursor = value;
    else state.done = decodeDone(value, key.toString('latin1'));
    byTarget.set(name, state);
  }
  const order = (s: SweepState): number => ('cleartext' in s.target ? Infinity : s.target.keyId);
  return [...byTarget.values()].sort((a, b) => order(a) - order(b));
}
