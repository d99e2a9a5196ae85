// The store part's public door: the MVCC store (SPEC §5), its engines and
// encodings, and snapshot streams.

export { Store, type ApplyOptions, type ApplyResult, type BatchSealPool, type Entry, type EncryptionSettings, type ReadOptions, type ScanOptions, type ScanRange, type StoredVersion, type WriteOp } from './store.js';
export { MemoryEngine, type Engine, type EngineEntry, type EngineOp, type EngineRange, type EngineReader, type IterateOptions, type EngineSnapshot } from './engine.js';
export { RocksEngine, type RocksOptions } from './rocksdb.js';
export {
  decodeStoreKey,
  encodeStoreKey,
  headRowKey,
  rewriteCursorKey,
  versionRowKey,
  writerRegistryKey,
} from './keys.js';
export { FLAG_TOMBSTONE, STATE_CLEARTEXT, STATE_ENVELOPE, decodeValue, encodeValueHeader, type ValueHeader } from './value.js';
export { SNAPSHOT_MAGIC_V1, encodeSnapshotHeader, readSnapshot, type SnapshotHeader, type SnapshotInfo } from './snapshot.js';
export { SPACE_INTERNAL, SPACE_VERSION } from './keys.js';

import { RocksEngine, type RocksOptions } from './rocksdb.js';
import { Store, type EncryptionSettings } from './store.js';

/** Opens (creating if needed) the RocksDB-backed store at `path`. */
export async function openStore(path: string, encryption?: EncryptionSettings, options?: RocksOptions): Promise<Store> {
  return new Store(await RocksEngine.open(path, options), encryption);
}
