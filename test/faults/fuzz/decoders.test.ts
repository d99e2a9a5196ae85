// Every decoder of bytes that come from disk or from a peer, fuzzed with
// random and mutated inputs (SPEC §3, §4.3, §5.2, §5.4, §6, §7, §13): the
// storage and Raft envelopes, the value header and a whole stored row read
// through the store, keys.json, Raft log records and a whole segment log,
// snapshot streams, proposal framing and the state-machine payloads.
// A failure must be a typed SealError (anything else fails the property);
// a mutated AUTHENTICATED input (envelope, stored sealed row, checksummed
// log record or snapshot) must never decode as a success. Each property
// records its inputs in the fault campaign report.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { AesniBackend, RAFT_AAD, type AadContext } from '../../../src/crypto/index.js';
import { encodeEncryptionPayload, decodeEncryptionPayload } from '../../../src/encryption/payload.js';
import { decodeCorePayload, encodeBatchPayload, encodeCeilingPayload, encodeRequestPayload } from '../../../src/fsm/payload.js';
import { decodeProposal, encodeProposal, SegmentLog, type Entry } from '../../../src/raft/index.js';
import { encodeRecords, parseRecord, RecordType } from '../../../src/raft/log/record.js';
import { parseSidecar, serializeSidecar, type SidecarState } from '../../../src/sidecar/schema.js';
import { MemoryEngine, Store, decodeValue } from '../../../src/store/index.js';
import { fixtureSealer, valueHeader } from '../../support/crypto-fixtures.js';
import { recordFault } from '../support/report.js';
import { fcParams, mutated, outcome, outcomeAsync, sameBytes } from './support.js';

const sealer = fixtureSealer(new AesniBackend());
const storeKey = Buffer.concat([Buffer.from('fuzz:key'), Buffer.alloc(8, 0xee)]);
const storageAad = (header: Uint8Array = valueHeader(0b010)): AadContext => ({ kind: 'storage', valueHeader: header, storeKey });
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Counts inputs of one property and records them in the campaign report. */
function counter(scenario: string): { add(anomaly?: boolean): void; record(): void } {
  let operations = 0;
  let anomalies = 0;
  return {
    add(anomaly = false) {
      operations++;
      if (anomaly) anomalies++;
    },
    record() {
      recordFault({ area: 'fuzz', scenario, faults: operations, operations, anomalies });
    },
  };
}

describe('envelope decoders', () => {
  it('storage and Raft envelopes: random bytes never open; a mutated envelope never opens; the original does', () => {
    const count = counter('storage and Raft envelope open: random and mutated envelopes');
    const plaintext = crypto.randomBytes(57);
    const storage = sealer.sealOne('storage', plaintext, 0, storageAad());
    const raft = sealer.sealOne('raft', plaintext, 0, RAFT_AAD);
    expect(Buffer.from(sealer.openOne(storage, storageAad()).plaintext).equals(plaintext)).toBe(true);
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 160 }), mutated(storage), mutated(raft)), fc.boolean(), (bytes, asRaft) => {
        const got = outcome(() => sealer.openOne(bytes, asRaft ? RAFT_AAD : storageAad()));
        count.add(got === 'ok');
        expect(got).not.toBe('ok');
      }),
      fcParams(600),
    );
    count.record();
  });
});

describe('stored values', () => {
  it('value header: any 0..20 bytes decode or fail typed (ErrStoreCorrupt, ErrReservedEncryptionState)', () => {
    const count = counter('value header decode: random rows');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20 }), (row) => {
        const got = outcome(() => decodeValue(row));
        count.add();
        if (row.length < 9) expect(got).toBe('ErrStoreCorrupt');
        else if ((row[0]! & 0xf8) !== 0 || (row[0]! & 0x06) === 0x04 || (row[0]! & 0x06) === 0x06) expect(got).toBe('ErrReservedEncryptionState');
        else expect(got).toBe('ok');
      }),
      fcParams(500),
    );
    count.record();
  });

  it('a sealed row mutated in the engine is a typed error on read, never data and never "not found"', async () => {
    const count = counter('sealed stored row mutated, read through the store');
    const engine = new MemoryEngine();
    const store = new Store(engine, { sealer, active: true });
    const key = Buffer.from('fuzz-row');
    const value = crypto.randomBytes(80);
    await store.put(key, value, 5n);
    let rowKey: Buffer | undefined;
    let row: Buffer | undefined;
    for await (const e of engine.iterate({ gte: Buffer.from([0x03]), lt: Buffer.from([0x04]) })) [rowKey, row] = [e.key, e.value];
    expect(row).toBeDefined();
    await fc.assert(
      fc.asyncProperty(
        // Rows whose mutated header says encryption_state 00 (cleartext) are
        // left out: the read path must trust that field (SPEC §5.2), so such
        // a row serves its body — the envelope bytes — as a cleartext value.
        mutated(row!).filter((m) => m.length < 9 || (m[0]! & 0x06) !== 0),
        async (bad) => {
          await engine.write([{ type: 'put', key: rowKey!, value: Buffer.from(bad) }]);
          const got = await outcomeAsync(() => store.get(key, 10n));
          count.add(got === 'ok');
          expect(got).not.toBe('ok');
        },
      ),
      fcParams(300),
    );
    await engine.write([{ type: 'put', key: rowKey!, value: row! }]);
    expect((await store.get(key, 10n))?.value.equals(value)).toBe(true);
    count.record();
  });
});

describe('keys.json', () => {
  const state: SidecarState = parseSidecar(
    JSON.stringify({
      version: 1,
      raft_applied_index: 184273,
      storage_envelope_active: true,
      raft_envelope_cutover_index: 184201,
      active: { storage: 305419896, raft: 2596069104 },
      keys: {
        '305419896': { purpose: 'storage', wrapped: crypto.randomBytes(60).toString('base64'), created: '2026-04-29T10:00:00Z', local_epoch: 7, kek: 'file:///etc/sealkv/kek' },
        '2596069104': { purpose: 'raft', wrapped: crypto.randomBytes(60).toString('base64'), created: '2026-04-29T10:00:00Z', local_epoch: 7, kek: 'file:///etc/sealkv/kek' },
      },
    }),
  );
  const text = serializeSidecar(state);

  it('random and mutated files parse or fail with ErrSidecarCorrupt only', () => {
    const count = counter('keys.json parse: random and mutated files');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.json({ maxDepth: 3 }),
          mutated(Buffer.from(text)).map((b) => Buffer.from(b).toString('latin1')),
        ),
        (candidate) => {
          const got = outcome(() => parseSidecar(candidate));
          count.add();
          expect(['ok', 'ErrSidecarCorrupt']).toContain(got);
        },
      ),
      fcParams(600),
    );
    count.record();
  });
});

describe('Raft log', () => {
  const entry: Entry = { index: 42, term: 7, type: 'normal', data: encodeProposal(99n, crypto.randomBytes(40)) };
  const record = encodeRecords([{ type: RecordType.Entry, entry }, { type: RecordType.HardState, hardState: { term: 7, vote: 2, commit: 41 } }]);

  it('record parser: random bytes never throw; a mutated record never parses as a different record', () => {
    const count = counter('Raft log record parse: random and mutated records');
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }), mutated(record)), (bytes) => {
        const buf = Buffer.from(bytes);
        const res = parseRecord(buf, 0);
        let anomaly = false;
        if (res.ok && res.record.type === RecordType.Entry) {
          const e = res.record.entry;
          // Only the unmutated first record may parse as that entry: same bytes up to its end.
          anomaly = !(sameBytes(buf.subarray(0, res.end), record.subarray(0, res.end)) && e.index === 42 && sameBytes(e.data, entry.data));
        }
        count.add(anomaly);
        expect(anomaly).toBe(false);
      }),
      fcParams(800),
    );
    count.record();
  });

  it('proposal framing: random entry data decodes or fails with ErrRaftLogCorrupt only', () => {
    const count = counter('proposal framing decode: random entry data');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const got = outcome(() => decodeProposal(bytes));
        count.add();
        expect(['ok', 'ErrRaftLogCorrupt']).toContain(got);
      }),
      fcParams(300),
    );
    count.record();
  });

  it('a whole segment log mutated on disk opens to a prefix of its entries or fails with ErrRaftLogCorrupt, never skipping one', async () => {
    const count = counter('segment log recovery: mutated segment files');
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sealkv-fuzz-seg-'));
    dirs.push(base);
    const src = path.join(base, 'src');
    const entries: Entry[] = Array.from({ length: 12 }, (_, i) => ({ index: i + 2, term: 2, type: 'normal', data: encodeProposal(BigInt(i + 1), crypto.randomBytes(10 + i)) }));
    const log = await SegmentLog.open({ dir: src, bootstrap: { voters: [1], learners: [] } });
    await log.save({ entries, hardState: { term: 2, vote: 1, commit: 13 } }, true);
    await log.close();
    const segName = fs.readdirSync(src).filter((n) => n.endsWith('.seg')).sort()[0]!;
    const segment = fs.readFileSync(path.join(src, segName));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(mutated(segment), async (bad) => {
        const dir = path.join(base, `r${run++}`);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, segName), bad);
        let anomaly = false;
        try {
          const opened = await SegmentLog.open({ dir }).catch((err: unknown) => err);
          if (opened instanceof SegmentLog) {
            // Recovered entries: a prefix of the originals, each byte-identical.
            const last = opened.lastIndex();
            const got = last >= 2 ? opened.entries(2, last + 1, Number.MAX_SAFE_INTEGER) : [];
            anomaly = got.some((e, i) => e.index !== entries[i]!.index || !sameBytes(e.data, entries[i]!.data));
            await opened.close();
          } else {
            expect((opened as { code?: string }).code, String(opened)).toBe('ErrRaftLogCorrupt');
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
        count.add(anomaly);
        expect(anomaly).toBe(false);
      }),
      fcParams(120),
    );
    count.record();
  });
});

describe('snapshot streams', () => {
  async function* chunks(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
  }

  it('random and mutated streams fail typed (ErrSnapshotCorrupt, ErrSnapshotHeaderVersion); a mutated stream never restores', async () => {
    const count = counter('snapshot stream reader: random and mutated streams');
    const source = new Store(new MemoryEngine(), { sealer, active: true });
    for (let i = 0; i < 8; i++) await source.put(Buffer.from(`snap-${i}`), crypto.randomBytes(20 + i), BigInt(i + 1));
    const streams: Uint8Array[] = [];
    for (const header of [{ version: 1 as const, ceiling: 5n }, { version: 2 as const, ceiling: 5n, cutover: 3n }, null]) {
      const parts: Buffer[] = [];
      for await (const c of source.snapshotStream(header)) parts.push(Buffer.from(c));
      streams.push(Buffer.concat(parts));
    }
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 200 }), mutated(streams[0]!), mutated(streams[1]!), mutated(streams[2]!)),
        fc.integer({ min: 1, max: 64 }),
        async (bytes, size) => {
          const target = new Store(new MemoryEngine(), { sealer, active: false });
          const got = await outcomeAsync(() => target.restoreSnapshot(chunks(bytes, size)));
          count.add(got === 'ok');
          expect(got).not.toBe('ok');
          expect(['ErrSnapshotCorrupt', 'ErrSnapshotHeaderVersion']).toContain(got);
        },
      ),
      fcParams(300),
    );
    count.record();
  });
});

describe('state-machine payloads', () => {
  const core = [
    encodeRequestPayload({ op: 'set', key: 'k', value: 'v' }, 12n),
    encodeBatchPayload([{ op: 'set', key: 'a', value: 'b' }, { op: 'del', key: 'c' }], 13n),
    encodeCeilingPayload(99n),
  ];
  const encryption = [
    encodeEncryptionPayload({ kind: 'retire-dek', keyId: 77 }),
    encodeEncryptionPayload({ kind: 'enable-storage-envelope' }),
    encodeEncryptionPayload({ kind: 'enable-raft-envelope' }),
    encodeEncryptionPayload({ kind: 'register', rows: [{ keyId: 9, nodeId16: 3, fullNodeId: 'n1', localEpoch: 2 }], reason: 'start' }),
    encodeEncryptionPayload({
      kind: 'rotate-dek',
      key: { keyId: 10, purpose: 'storage', wrapped: crypto.randomBytes(60), created: '2026-05-01T00:00:00Z', kek: 'file:///k' },
      writers: [{ nodeId16: 3, fullNodeId: 'n1', localEpoch: 2 }],
    }),
    encodeEncryptionPayload({ kind: 'rewrap-deks', keys: [{ keyId: 5, wrapped: crypto.randomBytes(60), kek: 'file:///k' }] }),
  ];

  it('core payloads (0x00..0x02): random and mutated bytes decode or fail with ErrApplyPayload only', () => {
    const count = counter('core payload decode (src/fsm/payload.ts): random and mutated');
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), ...core.map((p) => mutated(p))), (bytes) => {
        const got = outcome(() => decodeCorePayload(bytes));
        count.add();
        expect(['ok', 'ErrApplyPayload']).toContain(got);
      }),
      fcParams(800),
    );
    count.record();
  });

  it('encryption payloads (0x03..0x05): random and mutated bytes decode or fail with ErrEncryptionApply only', () => {
    const count = counter('encryption payload decode (src/encryption/payload.ts): random and mutated');
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), ...encryption.map((p) => mutated(p))), (bytes) => {
        const got = outcome(() => decodeEncryptionPayload(bytes));
        count.add();
        expect(['ok', 'ErrEncryptionApply']).toContain(got);
      }),
      fcParams(800),
    );
    count.record();
  });
});

