// --kek-uri parsing: every accepted form, and ErrKEKUri for every malformed one.

import { describe, expect, it } from 'vitest';
import { DEFAULT_KMS_MAX_ATTEMPTS, DEFAULT_KMS_TIMEOUT_MS, openKekProvider, parseKekUri } from '../../src/kek/index.js';
import { expectSealError } from '../support/kek-fixtures.js';

const ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

describe('parseKekUri', () => {
  it('parses aws-kms:// with key id, ARN, alias and parameters', () => {
    expect(parseKekUri('aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab')).toEqual({
      kind: 'aws-kms',
      keyId: '1234abcd-12ab-34cd-56ef-1234567890ab',
      timeoutMs: DEFAULT_KMS_TIMEOUT_MS,
      maxAttempts: DEFAULT_KMS_MAX_ATTEMPTS,
    });
    expect(parseKekUri(`aws-kms://${ARN}`)).toMatchObject({ keyId: ARN, region: 'eu-west-1' });
    expect(parseKekUri('aws-kms://alias/prod-kek?region=us-east-2&endpoint=http://127.0.0.1:4566&timeout_ms=500&max_attempts=1')).toEqual({
      kind: 'aws-kms',
      keyId: 'alias/prod-kek',
      region: 'us-east-2',
      endpoint: 'http://127.0.0.1:4566',
      timeoutMs: 500,
      maxAttempts: 1,
    });
    expect(parseKekUri('aws-kms://alias%2Fprod-kek')).toMatchObject({ keyId: 'alias/prod-kek' });
  });

  it('parses file:// and env://', () => {
    expect(parseKekUri('file:///etc/sealkv/kek.bin')).toEqual({ kind: 'file', path: '/etc/sealkv/kek.bin' });
    expect(parseKekUri('file://keys/kek.bin')).toEqual({ kind: 'file', path: 'keys/kek.bin' });
    expect(parseKekUri('file:///srv/my%20keys/kek')).toEqual({ kind: 'file', path: '/srv/my keys/kek' });
    expect(parseKekUri('env://SEALKV_KEK_BASE64')).toEqual({ kind: 'env', variable: 'SEALKV_KEK_BASE64' });
  });

  it.each([
    ['empty', ''],
    ['no scheme', '/etc/kek.bin'],
    ['unknown scheme', 'vault://secret/kek'],
    ['upper-case scheme', 'FILE:///etc/kek'],
    ['whitespace', 'file:///etc/ke k'],
    ['kms without key', 'aws-kms://'],
    ['kms without key but params', 'aws-kms://?region=us-east-1'],
    ['kms bad key id', 'aws-kms://not a key'],
    ['kms key with credentials', 'aws-kms://AKID:secret@1234abcd'],
    ['kms non-kms ARN', 'aws-kms://arn:aws:s3:::bucket'],
    ['kms unknown parameter', 'aws-kms://alias/k?secret=x'],
    ['kms duplicate parameter', 'aws-kms://alias/k?region=us-east-1&region=us-east-2'],
    ['kms bad region', 'aws-kms://alias/k?region=Moon'],
    ['kms region contradicts ARN', `aws-kms://${ARN}?region=us-east-1`],
    ['kms endpoint not a URL', 'aws-kms://alias/k?endpoint=localhost'],
    ['kms endpoint wrong protocol', 'aws-kms://alias/k?endpoint=ftp://127.0.0.1:1'],
    ['kms endpoint with credentials', `aws-kms://alias/k?endpoint=${encodeURIComponent('http://u:p@127.0.0.1:1')}`],
    ['kms endpoint with query', `aws-kms://alias/k?endpoint=${encodeURIComponent('http://127.0.0.1:1/?a=b')}`],
    ['kms zero timeout', 'aws-kms://alias/k?timeout_ms=0'],
    ['kms non-numeric timeout', 'aws-kms://alias/k?timeout_ms=soon'],
    ['kms too many attempts', 'aws-kms://alias/k?max_attempts=99'],
    ['kms fragment', 'aws-kms://alias/k#x'],
    ['kms bad percent-encoding', 'aws-kms://alias%2/k'],
    ['file without path', 'file://'],
    ['file with query', 'file:///etc/kek?mode=1'],
    ['file with fragment', 'file:///etc/kek#a'],
    ['file with NUL escape', 'file:///etc/kek%00'],
    ['env without name', 'env://'],
    ['env bad name', 'env://1KEK'],
    ['env with path', 'env://A/B'],
    ['too long', `file:///${'a'.repeat(3000)}`],
  ])('refuses %s with ErrKEKUri', async (_label, uri) => {
    await expectSealError(() => parseKekUri(uri), 'ErrKEKUri');
  });

  it('refuses both --kek-uri and --kek-file, and neither', async () => {
    await expectSealError(() => openKekProvider({ kekUri: 'env://X', kekFile: '/tmp/k' }), 'ErrKEKUri');
    await expectSealError(() => openKekProvider({}), 'ErrKEKRequired');
  });
});
