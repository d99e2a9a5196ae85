// keys.json schema (SPEC §4.3): the SPEC example parses, the canonical
// form round-trips, and every malformed or inconsistent file is
// ErrSidecarCorrupt.

import { describe, expect, it } from 'vitest';
import { parseSidecar, serializeSidecar, sidecarTextProblem } from '../../src/sidecar/index.js';
import { expectSealError } from '../support/kek-fixtures.js';

const WRAPPED = Buffer.alloc(60, 7).toString('base64');

/** The example of SPEC §4.3, completed with the raft key its `active` names. */
function example(): Record<string, any> {
  return {
    version: 1,
    raft_applied_index: 184273,
    storage_envelope_active: true,
    raft_envelope_cutover_index: 184201,
    active: { storage: 305419896, raft: 2596069104 },
    keys: {
      '305419896': { purpose: 'storage', wrapped: WRAPPED, created: '2026-04-29T10:00:00Z', local_epoch: 7, kek: 'file:///etc/sealkv/kek.bin' },
      '2596069104': { purpose: 'raft', wrapped: WRAPPED, created: '2026-04-29T10:00:00.123Z', local_epoch: 0, kek: 'file:///etc/sealkv/kek.bin' },
    },
  };
}

describe('sidecar schema', () => {
  it('parses the SPEC example and serialises it back canonically', () => {
    const text = JSON.stringify(example(), null, 2) + '\n';
    const state = parseSidecar(text);
    expect(state.raftAppliedIndex).toBe(184273);
    expect(state.storageEnvelopeActive).toBe(true);
    expect(state.raftEnvelopeCutoverIndex).toBe(184201);
    expect(state.active).toEqual({ storage: 305419896, raft: 2596069104 });
    expect(state.keys.get(305419896)).toMatchObject({ purpose: 'storage', localEpoch: 7, created: '2026-04-29T10:00:00Z' });
    expect(Buffer.from(state.keys.get(2596069104)!.wrapped).toString('base64')).toBe(WRAPPED);
    expect(serializeSidecar(state)).toBe(text);
    expect(sidecarTextProblem(text)).toBeUndefined();
  });

  it('accepts an empty sidecar and a cutover of null', () => {
    const state = parseSidecar(JSON.stringify({ version: 1, raft_applied_index: 0, storage_envelope_active: false, raft_envelope_cutover_index: null, active: {}, keys: {} }));
    expect(state.keys.size).toBe(0);
    expect(state.raftEnvelopeCutoverIndex).toBeNull();
  });

  const cases: [string, (doc: Record<string, any>) => unknown][] = [
    ['an array', () => []],
    ['null', () => null],
    ['version 2', (d) => ((d.version = 2), d)],
    ['version "1"', (d) => ((d.version = '1'), d)],
    ['a missing field', (d) => (delete d.raft_envelope_cutover_index, d)],
    ['an unknown top-level field', (d) => ((d.checksum = 'x'), d)],
    ['a negative raft_applied_index', (d) => ((d.raft_applied_index = -1), d)],
    ['a fractional raft_applied_index', (d) => ((d.raft_applied_index = 1.5), d)],
    ['a string raft_applied_index', (d) => ((d.raft_applied_index = '184273'), d)],
    ['an unsafe raft_applied_index', (d) => ((d.raft_applied_index = 2 ** 60), d)],
    ['a non-boolean storage_envelope_active', (d) => ((d.storage_envelope_active = 1), d)],
    ['a cutover past the applied index', (d) => ((d.raft_envelope_cutover_index = 184274), d)],
    ['a cutover of 0', (d) => ((d.raft_envelope_cutover_index = 0), d)],
    ['active key_id 0', (d) => ((d.active.storage = 0), d)],
    ['active key_id above uint32', (d) => ((d.active.storage = 2 ** 32), d)],
    ['active key_id missing from keys', (d) => ((d.active.storage = 42), d)],
    ['active key of the wrong purpose', (d) => ((d.active.storage = 2596069104), d)],
    ['an unknown purpose in active', (d) => ((d.active.backup = 305419896), d)],
    ['keys of a purpose with no active', (d) => (delete d.active.raft, (d.raft_envelope_cutover_index = null), d)],
    ['storage envelope on without a storage key', (d) => ({ ...d, active: { raft: 2596069104 }, keys: { '2596069104': d.keys['2596069104'] } })],
    ['cutover without a raft key', (d) => ({ ...d, active: { storage: 305419896 }, keys: { '305419896': d.keys['305419896'] } })],
    ['key_id "0"', (d) => ((d.keys['0'] = d.keys['305419896']), d)],
    ['key_id with a leading zero', (d) => ((d.keys['0305419896'] = d.keys['305419896']), delete d.keys['305419896'], (d.active.storage = 305419896), d)],
    ['key_id above uint32', (d) => ((d.keys['4294967296'] = d.keys['305419896']), d)],
    ['key_id not decimal', (d) => ((d.keys['0x10'] = d.keys['305419896']), d)],
    ['an unknown purpose', (d) => ((d.keys['305419896'].purpose = 'backup'), d)],
    ['a key that is not an object', (d) => ((d.keys['305419896'] = 'x'), d)],
    ['an unknown key field', (d) => ((d.keys['305419896'].retired = true), d)],
    ['a missing key field', (d) => (delete d.keys['305419896'].kek, d)],
    ['wrapped not base64', (d) => ((d.keys['305419896'].wrapped = 'not base64!'), d)],
    ['wrapped empty', (d) => ((d.keys['305419896'].wrapped = ''), d)],
    ['wrapped too long', (d) => ((d.keys['305419896'].wrapped = Buffer.alloc(8192).toString('base64')), d)],
    ['created not a timestamp', (d) => ((d.keys['305419896'].created = 'yesterday'), d)],
    ['created with an offset', (d) => ((d.keys['305419896'].created = '2026-04-29T10:00:00+02:00'), d)],
    ['created impossible date', (d) => ((d.keys['305419896'].created = '2026-13-45T10:00:00Z'), d)],
    ['local_epoch 0x10000', (d) => ((d.keys['305419896'].local_epoch = 0x10000), d)],
    ['local_epoch -1', (d) => ((d.keys['305419896'].local_epoch = -1), d)],
    ['local_epoch as a string', (d) => ((d.keys['305419896'].local_epoch = '7'), d)],
    ['an empty kek', (d) => ((d.keys['305419896'].kek = ''), d)],
  ];
  it.each(cases)('refuses %s', async (_label, mutate) => {
    const text = JSON.stringify(mutate(example()));
    await expectSealError(() => parseSidecar(text), 'ErrSidecarCorrupt');
    expect(sidecarTextProblem(text)).toBeTypeOf('string');
  });

  it.each([
    ['an empty file', ''],
    ['whitespace', '  \n'],
    ['a truncated file', JSON.stringify(example(), null, 2).slice(0, 200)],
    ['trailing garbage', JSON.stringify(example()) + '}'],
    ['binary noise', '\u0000\u0001\u0002'],
  ])('refuses %s as unparseable', async (_label, text) => {
    await expectSealError(() => parseSidecar(text), 'ErrSidecarCorrupt');
  });

  it('refuses every truncation of a valid file', async () => {
    const text = serializeSidecar(parseSidecar(JSON.stringify(example())));
    for (let cut = 0; cut < text.trimEnd().length; cut += 7) {
      await expectSealError(() => parseSidecar(text.slice(0, cut)), 'ErrSidecarCorrupt');
    }
  });
});
