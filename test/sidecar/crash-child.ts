// Child process of the sidecar SIGKILL test (crash.test.ts), run from
// dist/: rewrites keys.json in a tight loop, one generation per Raft index,
// and prints each index to stdout once its apply has returned (the
// acknowledgement). Every generation's content is derived from its index,
// so the parent can tell a complete generation from a mix of two.
//
// It imports sidecar.js rather than the part's index so that start-up stays
// fast (the index also loads the KMS SDK): the test spawns it ~100 times.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Sidecar, sidecarPath, type SidecarChange } from '../../src/sidecar/sidecar.js';

/** Keys per generation: enough to make keys.json span several pages. */
export const CRASH_KEYS = 48;

/** The wrapped bytes generation `index` holds for `keyId`. */
export function generationBytes(index: number, keyId: number): Buffer {
  return crypto.createHash('sha512').update(`${index}/${keyId}`).digest().subarray(0, 60);
}

export function crashKeyIds(): number[] {
  return Array.from({ length: CRASH_KEYS }, (_, i) => 1000 + i);
}

async function main(dataDir: string): Promise<void> {
  let sidecar: Sidecar;
  if (fs.existsSync(sidecarPath(dataDir))) {
    sidecar = await Sidecar.load(dataDir);
  } else {
    sidecar = Sidecar.empty(dataDir);
    const changes: SidecarChange[] = crashKeyIds().map((keyId, i) => ({
      type: 'add-key',
      keyId,
      purpose: i % 2 === 0 ? 'storage' : 'raft',
      wrapped: generationBytes(1, keyId),
      kek: 'file:///crash-test/kek.bin',
      created: '2026-04-29T10:00:00Z',
    }));
    changes.push({ type: 'set-active', purpose: 'storage', keyId: 1000 }, { type: 'set-active', purpose: 'raft', keyId: 1001 });
    await sidecar.apply(1, changes);
    fs.writeSync(1, '1\n');
  }
  for (;;) {
    const index = sidecar.state.raftAppliedIndex + 1;
    await sidecar.apply(
      index,
      crashKeyIds().map((keyId) => ({ type: 'rewrap-key', keyId, wrapped: generationBytes(index, keyId), kek: `file:///crash-test/kek-${index}.bin` })),
    );
    fs.writeSync(1, `${index}\n`);
  }
}

// Only when run as a program: the test imports this module for generationBytes.
if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv[2]!);
