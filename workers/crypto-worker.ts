// piscina worker of the crypto pool (SPEC §3.5): seals, opens and re-seals
// chunks of batches handed over by src/crypto/pool.ts. The message protocol
// is written down in src/crypto/pool-protocol.ts.
//
// The backend (and its WASM module, when it has one) is made once, when
// piscina loads this file. DEKs are installed once per worker, on first
// need, through the pool's key channel; tasks carry key_ids only. Nonces
// come with each task, reserved by the main thread.

import { BroadcastChannel } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { isSealError, sealError } from '../src/errors/index.js';
import {
  Keystore,
  compressForSeal,
  createBackend,
  envelopeKeyId,
  packContiguous,
  packValues,
  toWire,
  unpackAads,
  unpackValues,
  transferablesOf,
  type CryptoTask,
  type CryptoTaskResult,
  type ItemFailure,
  type KeyMessage,
  type WorkerConfig,
} from '../src/crypto/index.js';

const config = workerData as WorkerConfig;
const backend = createBackend(config.backend);
const keys = new Keystore();
const waiting = new Map<number, { promise: Promise<void>; settle: (known: boolean) => void }>();

const channel = new BroadcastChannel(config.channel);
// The channel must not keep a finished worker alive; tasks do that.
channel.unref();
channel.onmessage = (event: unknown): void => {
  const message = (event as { data: KeyMessage }).data;
  switch (message.type) {
    case 'key':
      try {
        keys.install(message.keyId, message.purpose, message.key);
      } catch {
        // Other bytes under an installed key_id: keep the installed DEK; the
        // waiter (if any) is answered below either way.
      }
      message.key.fill(0);
      waiting.get(message.keyId)?.settle(true);
      break;
    case 'unknown':
      waiting.get(message.keyId)?.settle(false);
      break;
    case 'drop':
      keys.remove(message.keyId);
      break;
    case 'need':
      // Another worker's question: the answer will reach this worker too.
      break;
  }
};

/** Resolves once `keyId` is installed, or once the main thread says it has no such key. */
function fetchKey(keyId: number): Promise<void> {
  if (keys.get(keyId) !== undefined) return Promise.resolve();
  const pending = waiting.get(keyId);
  if (pending !== undefined) return pending.promise;
  let settle!: (known: boolean) => void;
  const promise = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => settle(false), config.keyWaitMs);
    settle = (known) => {
      clearTimeout(timer);
      waiting.delete(keyId);
      if (known || keys.get(keyId) !== undefined) resolve();
      else reject(sealError('ErrUnknownKeyId', `no DEK with key_id ${keyId} is loaded`));
    };
  });
  // A missing key fails only the items that need it; callers decide.
  promise.catch(() => undefined);
  waiting.set(keyId, { promise, settle });
  channel.postMessage({ type: 'need', keyId } satisfies KeyMessage);
  return promise;
}

/** Installs every DEK the envelopes name; unknown ones are left to fail per item. */
async function fetchEnvelopeKeys(envelopes: readonly Uint8Array[]): Promise<void> {
  const ids = new Set<number>();
  for (const envelope of envelopes) {
    const keyId = envelopeKeyId(envelope);
    if (keyId !== undefined) ids.add(keyId);
  }
  await Promise.allSettled([...ids].map(fetchKey));
}

async function sealKey(keyId: number) {
  await fetchKey(keyId);
  return keys.get(keyId)!;
}

function open(task: Extract<CryptoTask, { op: 'open' | 'reseal' }>, envelopes: readonly Uint8Array[]) {
  const aads = unpackAads(task.aads);
  const results = backend.openBatch(
    keys,
    envelopes.map((envelope, i) => ({ envelope, aad: aads[i]! })),
  );
  return { results, aads };
}

async function handle(task: CryptoTask): Promise<CryptoTaskResult> {
  switch (task.op) {
    case 'seal': {
      const dek = await sealKey(task.keyId);
      const aads = unpackAads(task.aads);
      const items = unpackValues(task.values).map((value, i) => {
        const aad = aads[i]!;
        const flag = task.flags[i]!;
        return task.compress === true && aad.kind === 'storage' && flag === 0 ? { ...compressForSeal(value), aad } : { plaintext: value, flag, aad };
      });
      return { op: 'seal', envelopes: packContiguous(backend.sealBatch(dek, task.nonces, items)) };
    }
    case 'open': {
      const envelopes = unpackValues(task.values);
      await fetchEnvelopeKeys(envelopes);
      const { results } = open(task, envelopes);
      const flags = new Uint8Array(results.length);
      const keyIds = new Uint32Array(results.length);
      const failures: ItemFailure[] = [];
      const plaintexts = results.map((result, index) => {
        if (!result.ok) {
          failures.push({ index, ...toWire(result.error) });
          return EMPTY;
        }
        flags[index] = result.flag;
        keyIds[index] = result.keyId;
        return result.plaintext;
      });
      return { op: 'open', values: packValues(plaintexts), flags, keyIds, failures };
    }
    case 'reseal': {
      const inputs = unpackValues(task.values);
      const [dek] = await Promise.all([sealKey(task.keyId), fetchEnvelopeKeys(inputs)]);
      const { results, aads } = open(task, inputs);
      const failures: ItemFailure[] = [];
      const opened: number[] = [];
      results.forEach((result, index) => {
        if (result.ok) opened.push(index);
        else failures.push({ index, ...toWire(result.error) });
      });
      // Nonces go to the opened items in order; counters of failed items
      // stay unused, never reused.
      const sealed = backend.sealBatch(
        dek,
        { ...task.nonces, count: opened.length },
        opened.map((index) => {
          const result = results[index] as Extract<(typeof results)[number], { ok: true }>;
          return { plaintext: result.plaintext, flag: result.flag, aad: aads[index]! };
        }),
      );
      const envelopes: Uint8Array[] = new Array(results.length).fill(EMPTY);
      opened.forEach((index, k) => (envelopes[index] = sealed[k]!));
      // Plaintexts never outlive the task.
      for (const index of opened) (results[index] as { plaintext: Uint8Array }).plaintext.fill(0);
      return { op: 'reseal', envelopes: packValues(envelopes), failures };
    }
  }
}

const EMPTY = new Uint8Array(0);

/** piscina's entry: typed errors travel as data; the buffers of the result are moved. */
export default async function run(task: CryptoTask): Promise<unknown> {
  // piscina parks an idle worker in Atomics.wait, where channel messages
  // wait too: one turn of the event loop applies the key installs and drops
  // posted before this task.
  await new Promise(setImmediate);
  let result: CryptoTaskResult;
  try {
    result = await handle(task);
  } catch (err) {
    if (!isSealError(err)) throw err;
    result = { op: 'error', error: toWire(err) };
  }
  // Nothing in the result aliases the input (every backend writes fresh
  // output), so its buffer can go back to the pool for reuse.
  const spare = task.values.bytes.buffer as ArrayBuffer;
  const buffers = result.op === 'open' ? [result.values, result.flags, result.keyIds] : result.op === 'error' ? [] : [result.envelopes];
  return move({ [transferableSymbol]: transferablesOf([...buffers, spare]), [valueSymbol]: { ...result, spare } } as never);
}
