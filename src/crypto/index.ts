// The crypto part's public door: envelope codecs and AAD builders, nonce
// factory, keystore, backends and the Sealer that ties them together.

export {
  ENVELOPE_VERSION,
  ENVELOPE_OVERHEAD,
  HEADER_BYTES,
  NONCE_BYTES,
  TAG_BYTES,
  VALUE_HEADER_BYTES,
  FLAG_COMPRESSED,
  RAFT_AAD,
  buildAad,
  envelopeKeyId,
  parseEnvelope,
  writeEnvelopeHeader,
  readU32BE,
  writeU32BE,
  type AadContext,
  type ParsedEnvelope,
} from './envelope.js';
export {
  WRITE_CEILING,
  ROTATE_AT_FRACTION,
  MAX_LOCAL_EPOCH,
  NonceFactory,
  fnv1a64,
  nodeId16,
  nonceAt,
  writeNonce,
  type NonceFactoryOptions,
  type NonceRange,
} from './nonce.js';
export { Keystore, DEK_BYTES, PURPOSES, checkKeyId, type Dek, type KeyLookup, type Purpose } from './keystore.js';
export type { BackendName, CryptoBackend, OpenItem, OpenResult, SealItem } from './backend.js';
export { AesniBackend } from './aesni.js';
export { Sealer, type SealerOptions, type SealedBatch } from './sealer.js';
export { NobleBackend } from './noble.js';
export { AutoBackend, HARDWARE_AES_THRESHOLDS, SOFTWARE_AES_THRESHOLDS, createBackend, opensslHardwareAes, type AutoThresholds } from './auto.js';
export {
  packContiguous,
  packValues,
  type PackAllocator,
  unpackValues,
  packAads,
  unpackAads,
  transferablesOf,
  toWire,
  fromWire,
  type CryptoTask,
  type CryptoTaskResult,
  type ItemFailure,
  type KeyMessage,
  type PackedAads,
  type PackedValues,
  type WireError,
  type WorkerConfig,
} from './pool-protocol.js';
export { CryptoPool, type CryptoPoolOptions, type PoolCallOptions, type PoolSealOptions, type ResealResult } from './pool.js';
export { WasmBackend } from './wasm.js';
export { BatchBackend } from './batch.js';
export { WasmCore, WasmCoreBackend, WASM_ABI_VERSION, wasmModule, wasmPath, type KeystreamFn, type WasmCoreExports, type WasmModule } from './wasm-core.js';
export { compressForSeal } from './compress.js';
export { BACKEND_NAMES, isBackendName } from './backend.js';
