// `backup verify`: proves a backup can be restored and read, with the KEK.
//
//   1. backup.json: its own checksum, then size and SHA-256 of every file it
//      lists (ErrBackupCorrupt naming the file);
//   2. keys.json: listed but gone → ErrBackupMissingSidecar; schema
//      (ErrSidecarCorrupt); its key_ids must be those backup.json names;
//   3. every DEK unwraps under the KEK given (ErrKEKMismatch; ErrKEKRequired
//      when the backup holds DEKs and no KEK was given);
//   4. store.snap is read whole (its trailer checksum, ErrSnapshotCorrupt) and
//      EVERY encrypted version is opened, in batches, with its storage AAD
//      (SPEC §3.1) — a version under a key_id the sidecar lacks fails as
//      ErrUnknownKeyId. Encrypted rows (or DEK rows) without a sidecar →
//      ErrBackupMissingSidecar: such a backup can never be read again; DEK
//      rows the sidecar lacks → ErrBackupCorrupt (files of two points).
//
// The report counts rows, versions per key_id, cleartext versions,
// tombstones and failures (row number, key_id, code — never bytes of a key
// or a value). Opened plaintext is dropped at once.

import fs from 'node:fs';
import path from 'node:path';
import { Keystore, createBackend, type BackendName, type OpenItem } from '../crypto/index.js';
import { KEY_ROW_PREFIX, keyIdOfKeyRow } from '../encryption/index.js';
import { ERROR_CODES, isSealError, sealError, type ErrorCode, type SealError } from '../errors/index.js';
import { timedUnwrap, type KekProvider } from '../kek/index.js';
import { parseSidecar, type SidecarState } from '../sidecar/index.js';
import { SPACE_INTERNAL, SPACE_VERSION, STATE_ENVELOPE, decodeValue, readSnapshot, type EngineOp } from '../store/index.js';
import { META_FILE, SIDECAR_FILE, STORE_FILE, checkFiles, readMeta, type BackupMeta } from './format.js';

export interface VerifyOptions {
  /** Needed when the backup holds DEKs. */
  readonly kek?: KekProvider;
  readonly backend?: BackendName;
}

export interface VerifyFailure {
  /** 0-based position of the row in store.snap. */
  readonly row: number;
  readonly key_id: number;
  readonly code: string;
}

export interface VerifyReport {
  readonly in: string;
  readonly applied_index: number;
  readonly created: string;
  readonly node: BackupMeta['node'];
  readonly sidecar: boolean;
  readonly keys: readonly { key_id: number; purpose: string }[];
  readonly rows: number;
  readonly versions: number;
  readonly tombstones: number;
  readonly cleartext_versions: number;
  readonly encrypted_versions: number;
  /** Encrypted versions opened, per key_id. */
  readonly per_key_id: Readonly<Record<string, number>>;
  readonly failures: number;
  /** The first failures (at most MAX_SAMPLES). */
  readonly failure_samples: readonly VerifyFailure[];
}

const MAX_SAMPLES = 10;

/** Checks the backup in `dir` end to end; throws on the first structural problem, counts per-value failures. */
export async function verifyBackup(dir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const root = path.resolve(dir);
  const meta = await readMeta(root);
  const { sidecarPresent } = await checkFiles(root, meta);
  if (!sidecarPresent && meta.files[SIDECAR_FILE] !== undefined) {
    throw sealError('ErrBackupMissingSidecar', `${META_FILE} lists ${SIDECAR_FILE} but it is not in ${root}: without it the encrypted values of this backup cannot be opened`);
  }
  const sidecar = sidecarPresent ? parseSidecar(fs.readFileSync(path.join(root, SIDECAR_FILE), 'utf8'), `${SIDECAR_FILE} of the backup`) : undefined;
  if (sidecar !== undefined) checkKeysListed(meta, sidecar);
  const keystore = new Keystore();
  try {
    if (sidecar !== undefined && sidecar.keys.size > 0) await unwrapAll(sidecar, options.kek, keystore);
    const { dekRows, ...counts } = await openRows(path.join(root, STORE_FILE), keystore, sidecar !== undefined, options.backend ?? 'auto');
    // Taken at one point, the sidecar holds every DEK the store's rows name.
    // It is written before the rows at apply, so a stopped node's may be one
    // entry ahead — a retire-dek whose rows did not land: only then may it lack one.
    const unknown = dekRows.filter((id) => sidecar?.keys.has(id) !== true);
    const sidecarAhead = sidecar !== undefined && sidecar.raftAppliedIndex > meta.applied_index;
    if (unknown.length > 0 && !sidecarAhead) {
      throw sealError('ErrBackupCorrupt', `${STORE_FILE} names DEKs [${unknown.join(', ')}] that ${SIDECAR_FILE} lacks: the two files are not from the same point`);
    }
    if (counts.rows !== meta.store.rows) throw sealError('ErrBackupCorrupt', `${STORE_FILE} holds ${counts.rows} rows but ${META_FILE} says ${meta.store.rows}`);
    return {
      in: root,
      applied_index: meta.applied_index,
      created: meta.created,
      node: meta.node,
      sidecar: sidecar !== undefined,
      keys: [...(sidecar?.keys.values() ?? [])].map((k) => ({ key_id: k.keyId, purpose: k.purpose })),
      ...counts,
    };
  } finally {
    keystore.clear();
  }
}

/** The first failure of a report as the typed error it was; undefined when every value opened. */
export function firstFailure(report: VerifyReport): SealError | undefined {
  const first = report.failure_samples[0];
  if (first === undefined) return undefined;
  const code: ErrorCode = first.code in ERROR_CODES ? (first.code as ErrorCode) : 'ErrBackupCorrupt';
  return sealError(
    code,
    `${report.failures} of ${report.encrypted_versions + report.failures} encrypted values of the backup did not open (first: row ${first.row} of ${STORE_FILE}, key_id ${first.key_id}): the backup was changed or damaged`,
  );
}

function checkKeysListed(meta: BackupMeta, sidecar: SidecarState): void {
  const listed = (meta.encryption?.keys ?? []).map((k) => k.key_id).sort((a, b) => a - b);
  const held = [...sidecar.keys.keys()].sort((a, b) => a - b);
  if (listed.join(',') !== held.join(',')) {
    throw sealError('ErrBackupCorrupt', `${SIDECAR_FILE} holds key_ids [${held.join(', ')}] but ${META_FILE} lists [${listed.join(', ')}]`);
  }
}

async function unwrapAll(sidecar: SidecarState, kek: KekProvider | undefined, keystore: Keystore): Promise<void> {
  if (kek === undefined) throw sealError('ErrKEKRequired', 'the backup holds wrapped DEKs: give the KEK (--kek-uri or --kek-file) to open them');
  for (const key of sidecar.keys.values()) {
    let dek: Uint8Array;
    try {
      ({ dek } = await timedUnwrap(kek, key.wrapped, { keyId: key.keyId, purpose: key.purpose }));
    } catch (err) {
      if (!isSealError(err, 'ErrKEKMismatch')) throw err;
      throw sealError('ErrKEKMismatch', `DEK ${key.keyId} (${key.purpose}) of the backup does not unwrap under ${kek.describe()}; it was wrapped under ${key.kek}`, err);
    }
    try {
      keystore.install(key.keyId, key.purpose, dek);
    } finally {
      dek.fill(0);
    }
  }
}

type Counts = Omit<VerifyReport, 'in' | 'applied_index' | 'created' | 'node' | 'sidecar' | 'keys'>;

async function openRows(file: string, keystore: Keystore, haveSidecar: boolean, backendName: BackendName): Promise<Counts & { dekRows: number[] }> {
  const backend = createBackend(backendName);
  const perKeyId: Record<string, number> = {};
  const samples: VerifyFailure[] = [];
  const dekRows: number[] = [];
  let rows = 0;
  let versions = 0;
  let tombstones = 0;
  let cleartext = 0;
  let encrypted = 0;
  let failures = 0;
  const fail = (row: number, keyId: number, code: string): void => {
    failures++;
    if (samples.length < MAX_SAMPLES) samples.push({ row, key_id: keyId, code });
  };
  const missingSidecar = (what: string): never => {
    throw sealError('ErrBackupMissingSidecar', `${STORE_FILE} holds ${what} but the backup has no ${SIDECAR_FILE}: its encrypted values can never be opened; take the backup again (it must include the sidecar)`);
  };
  const check = async (ops: EngineOp[]): Promise<void> => {
    const items: OpenItem[] = [];
    const where: { row: number; keyId: number }[] = [];
    for (const op of ops) {
      if (op.type !== 'put') continue;
      const row = rows++;
      const space = op.key[0];
      if (space === SPACE_INTERNAL && Buffer.from(op.key.subarray(1, 1 + KEY_ROW_PREFIX.length)).equals(KEY_ROW_PREFIX)) {
        if (!haveSidecar) missingSidecar('DEK rows');
        dekRows.push(keyIdOfKeyRow(op.key.subarray(1)));
      }
      if (space !== SPACE_VERSION) continue;
      versions++;
      let decoded;
      try {
        decoded = decodeValue(op.value);
      } catch (err) {
        fail(row, 0, isSealError(err) ? err.code : 'ErrStoreCorrupt');
        continue;
      }
      const { header, headerBytes, body } = decoded;
      if (header.encryptionState !== STATE_ENVELOPE) {
        if (header.tombstone) tombstones++;
        else cleartext++;
        continue;
      }
      if (!haveSidecar) missingSidecar('encrypted values');
      if (header.tombstone) tombstones++;
      items.push({ envelope: body, aad: { kind: 'storage', valueHeader: headerBytes, storeKey: op.key.subarray(1) } });
      where.push({ row, keyId: body.length >= 6 ? Buffer.from(body.buffer, body.byteOffset, body.length).readUInt32BE(2) : 0 });
    }
    if (items.length === 0) return;
    const results = backend.openBatch(keystore, items);
    results.forEach((result, i) => {
      if (result.ok) {
        encrypted++;
        perKeyId[String(result.keyId)] = (perKeyId[String(result.keyId)] ?? 0) + 1;
      } else {
        fail(where[i]!.row, where[i]!.keyId, result.error.code);
      }
    });
  };
  try {
    await readSnapshot(fs.createReadStream(file), check);
  } finally {
    backend.close?.();
  }
  return { rows, versions, tombstones, cleartext_versions: cleartext, encrypted_versions: encrypted, per_key_id: perKeyId, failures, failure_samples: samples, dekRows };
}
