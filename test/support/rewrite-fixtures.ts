// Fixtures of the rewrite sweep tests: a keystore with an old and a new
// storage DEK (the old one active until rotate() makes the new one active),
// a store sealing through it, a seeded generator, and a reader of every
// stored version with its opened value.

import crypto from 'node:crypto';
import { AesniBackend, Keystore, NonceFactory, Sealer } from '../../src/crypto/index.js';
import { Store, type BatchSealPool, type Engine } from '../../src/store/index.js';

export const OLD_KEY_ID = 0x0001_0001;
export const NEW_KEY_ID = 0x0002_0002;

export interface SweepFixture {
  keystore: Keystore;
  sealer: Sealer;
  store: Store;
  /** Makes NEW_KEY_ID the active storage DEK (as rotate-dek does). */
  rotate(): void;
}

export function sweepFixture(engine: Engine, options: { pool?: (keys: Keystore) => BatchSealPool; poolMinBytes?: number; localEpoch?: number } = {}): SweepFixture {
  const keystore = new Keystore();
  keystore.install(OLD_KEY_ID, 'storage', crypto.randomBytes(32));
  keystore.install(NEW_KEY_ID, 'storage', crypto.randomBytes(32));
  keystore.setActive('storage', OLD_KEY_ID);
  const sealer = new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId: 7, localEpoch: options.localEpoch ?? 1 }) });
  const pool = options.pool?.(keystore);
  const store = new Store(engine, { sealer, active: true, ...(pool === undefined ? {} : { pool, poolMinBytes: options.poolMinBytes ?? 0 }) });
  return { keystore, sealer, store, rotate: () => keystore.setActive('storage', NEW_KEY_ID) };
}

export interface OpenedVersion {
  id: string;
  keyId: number;
  tombstone: boolean;
  expireAt: bigint;
  value: Buffer | undefined;
}

/** Every stored version, opened, keyed `<user key>@<commit_ts>`. */
export async function storedVersions(store: Store): Promise<Map<string, OpenedVersion>> {
  const out = new Map<string, OpenedVersion>();
  for await (const v of store.versions()) {
    const [value] = store.openVersions([v]);
    out.set(`${v.key.toString('latin1')}@${v.commitTs}`, { id: `${v.key.toString('latin1')}@${v.commitTs}`, keyId: v.keyId, tombstone: v.header.tombstone, expireAt: v.header.expireAt, value });
  }
  return out;
}
