// `sealkv demo`: seals and opens a few values with a throwaway in-memory
// DEK and prints what it did — the envelope layout at a glance, until the
// node itself is what `npm start` runs.

import crypto from 'node:crypto';
import {
  AesniBackend,
  ENVELOPE_OVERHEAD,
  Keystore,
  NonceFactory,
  Sealer,
  nodeId16,
  type AadContext,
} from '../crypto/index.js';
import { isSealError } from '../errors/index.js';

export function runDemo(print: (line: string) => void = console.log): void {
  const keystore = new Keystore();
  const keyId = crypto.randomBytes(4).readUInt32BE() || 1;
  keystore.install(keyId, 'storage', crypto.randomBytes(32));
  keystore.setActive('storage', keyId);
  const nodeId = nodeId16('demo-node');
  const sealer = new Sealer({ keystore, backend: new AesniBackend(), nonceFactory: () => new NonceFactory({ nodeId, localEpoch: 1 }) });

  print(`sealkv demo: storage DEK key_id=${keyId}, node_id=0x${nodeId.toString(16).padStart(4, '0')}, backend=aesni (node:crypto ${process.versions.openssl})`);
  const header = new Uint8Array(9);
  header[0] = 0b010; // encryption_state = 01: the body is a storage envelope
  for (const [key, value] of [['user:1', 'alice'], ['user:2', 'bob'], ['greeting', 'hello, encrypted world']] as const) {
    const aad: AadContext = { kind: 'storage', valueHeader: header, storeKey: Buffer.from(key) };
    const envelope = sealer.sealOne('storage', Buffer.from(value), 0, aad);
    const opened = sealer.openOne(envelope, aad);
    print(
      `  ${key}: ${value.length} B plaintext -> ${envelope.length} B envelope (+${ENVELOPE_OVERHEAD}) ` +
        `nonce=${Buffer.from(envelope.subarray(6, 18)).toString('hex')} -> opened "${Buffer.from(opened.plaintext).toString()}"`,
    );
  }
  const aad: AadContext = { kind: 'storage', valueHeader: header, storeKey: Buffer.from('user:1') };
  const moved: AadContext = { kind: 'storage', valueHeader: header, storeKey: Buffer.from('user:2') };
  const envelope = sealer.sealOne('storage', Buffer.from('alice'), 0, aad);
  try {
    sealer.openOne(envelope, moved);
    print('  ERROR: a ciphertext moved to another key opened');
    process.exitCode = 1;
  } catch (err) {
    print(`  moving user:1's ciphertext to user:2 is detected: ${isSealError(err) ? err.code : String(err)}`);
  }
  keystore.clear();
}
