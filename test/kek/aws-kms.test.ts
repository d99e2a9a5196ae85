// The aws-kms:// provider driven through the real @aws-sdk/client-kms
// against the KMS-compatible test server on 127.0.0.1.

import crypto from 'node:crypto';
import { DescribeKeyCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openKekProvider, type KekProvider } from '../../src/kek/index.js';
import { KmsTestServer, type KmsTestKey } from '../support/kms-server.js';
import { expectSealError } from '../support/kek-fixtures.js';

const CREDENTIALS = { accessKeyId: 'AKIDSEALKVTEST', secretAccessKey: 'sealkv-test-secret-not-a-real-key' };

let server: KmsTestServer;
let key: KmsTestKey;
const opened: KekProvider[] = [];

function provider(uri: string): KekProvider {
  const p = openKekProvider({ kekUri: uri });
  opened.push(p);
  return p;
}

beforeAll(async () => {
  vi.stubEnv('AWS_ACCESS_KEY_ID', CREDENTIALS.accessKeyId);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', CREDENTIALS.secretAccessKey);
  vi.stubEnv('AWS_CONFIG_FILE', '/nonexistent/sealkv-test/config');
  vi.stubEnv('AWS_SHARED_CREDENTIALS_FILE', '/nonexistent/sealkv-test/credentials');
  vi.stubEnv('AWS_REGION', undefined);
  vi.stubEnv('AWS_DEFAULT_REGION', undefined);
  server = await KmsTestServer.start({ credentials: CREDENTIALS });
  key = server.createKey('sealkv-test');
});

afterEach(() => {
  server.fail('none');
  server.delay(0);
  for (const p of opened.splice(0)) p.close();
});

afterAll(async () => {
  await server.stop();
  vi.unstubAllEnvs();
});

const dek = () => crypto.randomBytes(32);

describe('aws-kms provider against the KMS test server', () => {
  it.each([
    ['key id', () => key.keyId],
    ['key ARN', () => key.arn],
    ['alias', () => 'alias/sealkv-test'],
  ])('wraps and unwraps a DEK by %s, signed with SigV4', async (_label, name) => {
    const kek = provider(server.uri(name()));
    const plain = dek();
    const wrapped = await kek.wrap(plain, { keyId: 7, purpose: 'storage' });
    expect(Buffer.from(wrapped).includes(plain)).toBe(false);
    const back = await kek.unwrap(wrapped, { keyId: 7, purpose: 'storage' });
    expect(Buffer.from(back).equals(plain)).toBe(true);
    expect(server.authFailures).toBe(0);
  });

  it('refuses calls once closed', async () => {
    const kek = openKekProvider({ kekUri: server.uri(key.keyId) });
    kek.close();
    await expect(kek.wrap(dek(), { keyId: 1, purpose: 'raft' })).rejects.toThrow(/closed/);
  });

  it('describes itself without credentials', () => {
    const kek = provider(server.uri(key.keyId));
    expect(kek.kind).toBe('aws-kms');
    expect(kek.describe()).toContain(key.keyId);
    expect(kek.describe()).toContain(encodeURIComponent(server.endpoint));
    expect(kek.describe()).not.toContain(CREDENTIALS.secretAccessKey);
    expect(kek.describe()).not.toContain(CREDENTIALS.accessKeyId);
  });

  it('binds the wrapped DEK to its key_id and purpose (encryption context)', async () => {
    const kek = provider(server.uri(key.keyId));
    const wrapped = await kek.wrap(dek(), { keyId: 7, purpose: 'storage' });
    await expectSealError(kek.unwrap(wrapped, { keyId: 8, purpose: 'storage' }), 'ErrKEKMismatch');
    await expectSealError(kek.unwrap(wrapped, { keyId: 7, purpose: 'raft' }), 'ErrKEKMismatch');
  });

  it('refuses a DEK wrapped under another KMS key, and an unknown key', async () => {
    const other = server.createKey();
    const wrapped = await provider(server.uri(other.keyId)).wrap(dek(), { keyId: 9, purpose: 'raft' });
    await expectSealError(provider(server.uri(key.keyId)).unwrap(wrapped, { keyId: 9, purpose: 'raft' }), 'ErrKEKMismatch');
    const unknown = provider(server.uri(crypto.randomUUID()));
    await expectSealError(unknown.wrap(dek(), { keyId: 9, purpose: 'raft' }), 'ErrKEKMismatch');
    await expectSealError(unknown.unwrap(wrapped, { keyId: 9, purpose: 'raft' }), 'ErrKEKMismatch');
  });

  it('refuses a tampered ciphertext', async () => {
    const kek = provider(server.uri(key.keyId));
    const wrapped = Buffer.from(await kek.wrap(dek(), { keyId: 3, purpose: 'storage' }));
    wrapped[wrapped.length - 1]! ^= 1;
    await expectSealError(kek.unwrap(wrapped, { keyId: 3, purpose: 'storage' }), 'ErrKEKMismatch');
  });

  it('reports a disabled key as unavailable', async () => {
    const disabled = server.createKey();
    const kek = provider(server.uri(disabled.keyId));
    const wrapped = await kek.wrap(dek(), { keyId: 4, purpose: 'storage' });
    server.setKeyEnabled(disabled.keyId, false);
    await expectSealError(kek.unwrap(wrapped, { keyId: 4, purpose: 'storage' }), 'ErrKEKUnavailable');
  });

  it('retries a failing KMS max_attempts times, then reports ErrKEKUnavailable', async () => {
    const kek = provider(server.uri(key.keyId, { max_attempts: 3 }));
    const wrapped = await kek.wrap(dek(), { keyId: 5, purpose: 'storage' });
    for (const failure of ['internal', 'throttle'] as const) {
      server.fail(failure);
      const before = server.callCount('Decrypt');
      await expectSealError(kek.unwrap(wrapped, { keyId: 5, purpose: 'storage' }), 'ErrKEKUnavailable');
      expect(server.callCount('Decrypt') - before).toBe(3);
    }
    server.fail('none');
    expect((await kek.unwrap(wrapped, { keyId: 5, purpose: 'storage' })).length).toBe(32);
  });

  it('honours timeout_ms against a slow KMS: the call fails before KMS answers', async () => {
    const kek = provider(server.uri(key.keyId, { timeout_ms: 200, max_attempts: 1 }));
    const wrapped = await kek.wrap(dek(), { keyId: 6, purpose: 'raft' });
    server.delay(30_000);
    const before = server.answered;
    await expectSealError(kek.unwrap(wrapped, { keyId: 6, purpose: 'raft' }), 'ErrKEKUnavailable');
    expect(server.answered).toBe(before);
  });

  it('rejects requests whose SigV4 signature was made with the wrong secret', async () => {
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'not-the-secret');
    try {
      const kek = provider(server.uri(key.keyId, { max_attempts: 1 }));
      const before = server.authFailures;
      await expectSealError(kek.wrap(dek(), { keyId: 1, purpose: 'storage' }), 'ErrKEKUnavailable');
      expect(server.authFailures).toBe(before + 1);
    } finally {
      vi.stubEnv('AWS_SECRET_ACCESS_KEY', CREDENTIALS.secretAccessKey);
    }
  });

  it('refuses unsigned and malformed-signature requests at the server', async () => {
    const before = server.authFailures;
    for (const authorization of [undefined, 'AWS4-HMAC-SHA256 Credential=x', `AWS4-HMAC-SHA256 Credential=AKID/20260101/${server.region}/s3/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`]) {
      const res = await fetch(server.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DescribeKey', 'x-amz-date': '20260101T000000Z', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ KeyId: key.keyId }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { __type: string }).__type).toBe('IncompleteSignatureException');
    }
    expect(server.authFailures).toBe(before + 3);
  });

  it('takes the endpoint from the SDK configuration (AWS_ENDPOINT_URL_KMS) when the URI has none', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_KMS', server.endpoint);
    try {
      const kek = provider(`aws-kms://${key.keyId}?region=${server.region}`);
      const before = server.callCount('Encrypt');
      const wrapped = await kek.wrap(dek(), { keyId: 1, purpose: 'raft' });
      expect(server.callCount('Encrypt')).toBe(before + 1);
      expect((await kek.unwrap(wrapped, { keyId: 1, purpose: 'raft' })).length).toBe(32);
    } finally {
      vi.stubEnv('AWS_ENDPOINT_URL_KMS', undefined);
    }
  });

  it('takes the region from the SDK configuration when the URI has none', async () => {
    const bare = `aws-kms://${key.keyId}?endpoint=${encodeURIComponent(server.endpoint)}`;
    await expectSealError(provider(bare).wrap(dek(), { keyId: 1, purpose: 'storage' }), 'ErrKEKUri');
    vi.stubEnv('AWS_REGION', server.region);
    try {
      const kek = provider(bare);
      const wrapped = await kek.wrap(dek(), { keyId: 1, purpose: 'storage' });
      expect((await kek.unwrap(wrapped, { keyId: 1, purpose: 'storage' })).length).toBe(32);
    } finally {
      vi.stubEnv('AWS_REGION', undefined);
    }
  });

  it('serves GenerateDataKey and DescribeKey to the SDK', async () => {
    const client = new KMSClient({ region: server.region, endpoint: server.endpoint });
    try {
      const described = await client.send(new DescribeKeyCommand({ KeyId: 'alias/sealkv-test' }));
      expect(described.KeyMetadata?.Arn).toBe(key.arn);
      expect(described.KeyMetadata?.Enabled).toBe(true);
      const generated = await client.send(new GenerateDataKeyCommand({ KeyId: key.keyId, KeySpec: 'AES_256', EncryptionContext: { a: 'b' } }));
      expect(generated.Plaintext?.length).toBe(32);
      expect(generated.KeyId).toBe(key.arn);
    } finally {
      client.destroy();
    }
  });
});

describe('aws-kms provider with KMS down', () => {
  it('fails with ErrKEKUnavailable when nothing listens on the endpoint', async () => {
    const down = await KmsTestServer.start({ credentials: CREDENTIALS });
    const uri = down.uri(down.createKey().keyId, { max_attempts: 2, timeout_ms: 2000 });
    await down.stop();
    await expectSealError(provider(uri).unwrap(crypto.randomBytes(80), { keyId: 1, purpose: 'storage' }), 'ErrKEKUnavailable');
  });
});
