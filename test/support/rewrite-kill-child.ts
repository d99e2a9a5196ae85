// Child process of the sweep's SIGKILL test: opens the RocksDB store at
// <data-dir> with the test's old and new storage DEKs (the new one active,
// nonces at <local-epoch>), runs a sweep of the old key_id in small batches
// and prints the re-sealed count after each batch, until done or killed.
// Run from dist/.
//
//   node dist/test/support/rewrite-kill-child.js <data-dir> <local-epoch>
// SEALKV_TEST_OLD_DEK_HEX and SEALKV_TEST_NEW_DEK_HEX carry the DEKs.

import { AesniBackend, Keystore, NonceFactory, Sealer } from '../../src/crypto/index.js';
import { runSweep } from '../../src/rewrite/index.js';
import { openStore } from '../../src/store/index.js';

export const KILL_OLD_KEY_ID = 0x0ddd_0001;
export const KILL_NEW_KEY_ID = 0x0eee_0002;

/** Both DEKs loaded; `active` says which one new seals use. */
export function killSweepSealer(oldHex: string, newHex: string, localEpoch: number, active: number): Sealer {
  const keystore = new Keystore();
  keystore.install(KILL_OLD_KEY_ID, 'storage', Buffer.from(oldHex, 'hex'));
  keystore.install(KILL_NEW_KEY_ID, 'storage', Buffer.from(newHex, 'hex'));
  keystore.setActive('storage', active);
  return new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId: 3, localEpoch }) });
}

export function killSweepValue(i: number, ts: number): Buffer {
  return Buffer.from(`value ${i}@${ts} `.repeat(8 + (i % 50)));
}

async function main(): Promise<void> {
  const [dir, epoch] = process.argv.slice(2);
  const sealer = killSweepSealer(process.env.SEALKV_TEST_OLD_DEK_HEX!, process.env.SEALKV_TEST_NEW_DEK_HEX!, Number(epoch), KILL_NEW_KEY_ID);
  const store = await openStore(dir!, { sealer, active: true });
  const progress = await runSweep({ store, target: { keyId: KILL_OLD_KEY_ID }, batchVersions: 16, onProgress: (p) => process.stdout.write(`${p.rewritten}\n`) });
  process.stdout.write(progress.done ? 'done\n' : 'stopped\n');
  await store.close();
}

if (process.argv[1]?.endsWith('rewrite-kill-child.js')) await main();
