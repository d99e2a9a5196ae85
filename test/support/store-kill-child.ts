// Child process for the store's SIGKILL test: applies numbered batches
// (ten puts each, commit_ts = index, applied index = index) and prints each
// index once its batch resolved, until killed. Run from dist/.
//
//   node dist/test/support/store-kill-child.js <data-dir> <clear|sealed>
// SEALKV_TEST_DEK_HEX carries the test DEK for the sealed mode.

import { AesniBackend, Keystore, NonceFactory, Sealer } from '../../src/crypto/index.js';
import { openStore } from '../../src/store/index.js';

export const KILL_TEST_KEY_ID = 0x5eed0001;
export const KILL_TEST_BATCH = 10;

export function killTestKey(index: number, j: number): Buffer {
  return Buffer.from(`batch-${String(index).padStart(8, '0')}-${j}`);
}

export function killTestValue(index: number, j: number): Buffer {
  return Buffer.from(`value of ${index}/${j} `.repeat(20));
}

export function killTestSealer(dekHex: string, localEpoch: number): Sealer {
  const keystore = new Keystore();
  keystore.install(KILL_TEST_KEY_ID, 'storage', Buffer.from(dekHex, 'hex'));
  keystore.setActive('storage', KILL_TEST_KEY_ID);
  return new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId: 1, localEpoch }) });
}

async function main(): Promise<void> {
  const [dir, mode] = process.argv.slice(2);
  const sealed = mode === 'sealed';
  const store = await openStore(dir!, sealed ? { sealer: killTestSealer(process.env.SEALKV_TEST_DEK_HEX!, 1), active: true } : undefined);
  for (let index = Number(await store.appliedIndex()) + 1; ; index++) {
    const ops = Array.from({ length: KILL_TEST_BATCH }, (_, j) => ({ type: 'put' as const, key: killTestKey(index, j), value: killTestValue(index, j), commitTs: BigInt(index) }));
    await store.applyBatch(ops, { appliedIndex: BigInt(index) });
    process.stdout.write(`${index}\n`);
  }
}

if (process.argv[1]?.endsWith('store-kill-child.js')) await main();
