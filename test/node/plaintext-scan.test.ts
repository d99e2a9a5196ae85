// The plaintext scanner of the rollout tests, checked against a cleartext
// cluster of real processes: it must FIND the secret values in the store's
// files and the keys and values in the Raft log, and nothing it was not
// given. This is what makes the rollout tests' "absent" assertions able to
// fail. The traffic generator's history must also check linearizable.
import crypto from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKvHistory, describeKvHistory } from '../support/linearizability.js';
import { EncryptedCluster, Traffic, describeHits, isRaftLogFile, isStoreFile, scanFiles, sleep } from '../support/encrypted-cluster.js';

let cluster: EncryptedCluster | undefined;

afterAll(async () => {
  await cluster?.destroy();
});

describe('plaintext scanner on a cleartext cluster', () => {
  it('finds values in the store files and keys and values in the raft log', async () => {
    cluster = await EncryptedCluster.start({ voters: 3, capable: () => false });
    const traffic = new Traffic(cluster, { workers: 3 });
    traffic.phase = 'cleartext';
    await cluster.leader();
    traffic.start();
    await sleep(2_000);
    await traffic.stop();
    const quiet = await traffic.writeBatch(20);
    await cluster.settle();

    const acked = traffic.acked();
    expect(traffic.errors).toEqual([]);
    expect(acked.length).toBeGreaterThan(30);
    const verdict = checkKvHistory(traffic.history);
    expect(verdict.result, verdict.result === 'ok' ? '' : describeKvHistory(verdict.ops ?? [])).toBe('ok');

    // Every acknowledged write is readable on every node.
    for (const m of cluster.running) {
      const got = await cluster.client(m).mget(...acked.map((w) => w.key));
      expect(got).toEqual(acked.map((w) => w.value));
    }

    // Stopped cleanly first: RocksDB may still hold the last WAL records in its own buffer.
    for (const m of [...cluster.running]) await cluster.stop(m);
    const never = crypto.randomBytes(18).toString('base64url');
    const values = [...quiet.map((w) => Buffer.from(w.needle)), Buffer.from(never)];
    const keys = quiet.map((w) => Buffer.from(w.keyNeedle));
    for (const m of cluster.members) {
      const store = scanFiles(m.dataDir, values, isStoreFile);
      expect(store.files.length).toBeGreaterThan(0);
      // All values but the one never written are found in the clear.
      expect([...store.hits.keys()].sort((a, b) => a - b), `${m.id} store files: ${store.files.join(', ')}`).toEqual(quiet.map((_, i) => i));

      const raftValues = scanFiles(m.dataDir, values, isRaftLogFile);
      expect(raftValues.files.length).toBeGreaterThan(0);
      expect([...raftValues.hits.keys()].sort((a, b) => a - b), describeHits(raftValues, values.map(String))).toEqual(quiet.map((_, i) => i));
      const raftKeys = scanFiles(m.dataDir, keys, isRaftLogFile);
      expect(raftKeys.hits.size).toBe(keys.length);
      if (m.id === 'n1') console.log(`plaintext scan n1: store ${[...new Set([...store.hits.values()].flat())].join(', ')}; raft ${[...new Set([...raftValues.hits.values()].flat())].join(', ')}`);
    }
    console.log(`plaintext scan: ${acked.length} acknowledged writes, ${traffic.history.length} operations checked linearizable`);
  }, 90_000);
});
