// A KMS-compatible HTTP server for tests and benchmarks, on 127.0.0.1.
//
// Speaks the AWS JSON 1.1 protocol the real @aws-sdk/client-kms uses
// (`POST /`, `X-Amz-Target: TrentService.<Op>`, JSON bodies, errors as
// `{"__type": ..., "message": ...}`) for Encrypt, Decrypt, GenerateDataKey
// and DescribeKey. Every request must carry a well-formed SigV4
// Authorization header for the `kms` service; when the server is given the
// secret key it also recomputes and checks the signature.
//
// Like real KMS, ciphertext is bound to its key and encryption context:
// Decrypt under another context → InvalidCiphertextException, under another
// key → IncorrectKeyException, unknown key → NotFoundException, disabled key
// → DisabledException. Tests can make it fail every request or delay them.
//
// Blob layout (private to this server): 0x01 ‖ len(arn) u8 ‖ arn ‖ nonce(12)
// ‖ AES-256-GCM ciphertext ‖ tag(16), AAD = canonical JSON of the context.

import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface KmsTestCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface KmsTestKey {
  readonly keyId: string;
  readonly arn: string;
}

export type KmsFailure = 'none' | 'internal' | 'throttle';

interface StoredKey extends KmsTestKey {
  readonly material: Buffer;
  readonly created: number;
  enabled: boolean;
}

class KmsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const ACCOUNT = '111122223333';
const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([a-z0-9-]+)\/kms\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

export class KmsTestServer {
  readonly region: string;
  /** Requests answered, by operation (rejected ones included). */
  readonly calls = new Map<string, number>();
  /** Requests refused for a missing or bad signature. */
  authFailures = 0;
  /** Responses written (a request still delayed is not answered yet). */
  answered = 0;
  readonly #server: http.Server;
  readonly #credentials: KmsTestCredentials | undefined;
  readonly #keys = new Map<string, StoredKey>();
  readonly #aliases = new Map<string, string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #failure: KmsFailure = 'none';
  #delayMs = 0;

  private constructor(region: string, credentials: KmsTestCredentials | undefined) {
    this.region = region;
    this.#credentials = credentials;
    this.#server = http.createServer((req, res) => this.#handle(req, res));
  }

  /** Starts on 127.0.0.1 (an ephemeral port unless `port` is given). */
  static async start(options: { region?: string; credentials?: KmsTestCredentials; port?: number } = {}): Promise<KmsTestServer> {
    const server = new KmsTestServer(options.region ?? 'us-east-1', options.credentials);
    await new Promise<void>((resolve, reject) => {
      server.#server.once('error', reject);
      server.#server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    return server;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `aws-kms://` URI for a key on this server, with extra query parameters. */
  uri(key: string, extra: Record<string, string | number> = {}): string {
    const params = new URLSearchParams({ region: this.region, endpoint: this.endpoint });
    for (const [name, value] of Object.entries(extra)) params.set(name, String(value));
    return `aws-kms://${key}?${params.toString()}`;
  }

  createKey(alias?: string): KmsTestKey {
    const keyId = crypto.randomUUID();
    const arn = `arn:aws:kms:${this.region}:${ACCOUNT}:key/${keyId}`;
    this.#keys.set(keyId, { keyId, arn, material: crypto.randomBytes(32), created: Date.now() / 1000, enabled: true });
    if (alias !== undefined) this.#aliases.set(`alias/${alias}`, keyId);
    return { keyId, arn };
  }

  setKeyEnabled(keyId: string, enabled: boolean): void {
    const key = this.#keys.get(keyId);
    if (key === undefined) throw new Error(`no key ${keyId}`);
    key.enabled = enabled;
  }

  /** Every request from now on answers with this failure (`none` to stop). */
  fail(failure: KmsFailure): void {
    this.#failure = failure;
  }

  /** Every request from now on is answered after `ms` milliseconds. */
  delay(ms: number): void {
    this.#delayMs = ms;
  }

  callCount(op: string): number {
    return this.calls.get(op) ?? 0;
  }

  async stop(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      const op = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : target;
      this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
      const respond = (): void => {
        let status = 200;
        let payload: unknown;
        try {
          payload = this.#dispatch(req, body, op);
        } catch (err) {
          const e = err instanceof KmsError ? err : new KmsError('KMSInternalException', String(err), 500);
          status = e.status;
          payload = { __type: e.type, message: e.message };
        }
        this.answered++;
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': crypto.randomUUID() });
        res.end(JSON.stringify(payload));
      };
      if (this.#delayMs > 0) {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          respond();
        }, this.#delayMs);
        this.#timers.add(timer);
      } else {
        respond();
      }
    });
  }

  #dispatch(req: http.IncomingMessage, body: Buffer, op: string): unknown {
    this.#checkSignature(req, body);
    if (req.method !== 'POST' || req.headers['content-type'] !== 'application/x-amz-json-1.1') {
      throw new KmsError('SerializationException', 'expected POST with application/x-amz-json-1.1');
    }
    if (this.#failure === 'internal') throw new KmsError('KMSInternalException', 'injected failure', 500);
    if (this.#failure === 'throttle') throw new KmsError('ThrottlingException', 'injected throttling', 400);
    let input: Record<string, unknown>;
    try {
      input = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new KmsError('SerializationException', 'body is not JSON');
    }
    switch (op) {
      case 'Encrypt':
        return this.#encrypt(input);
      case 'Decrypt':
        return this.#decrypt(input);
      case 'GenerateDataKey':
        return this.#generateDataKey(input);
      case 'DescribeKey':
        return { KeyMetadata: this.#metadata(this.#key(input.KeyId)) };
      default:
        throw new KmsError('UnknownOperationException', `operation ${op} is not supported`);
    }
  }

  #checkSignature(req: http.IncomingMessage, body: Buffer): void {
    const header = req.headers.authorization;
    const amzDate = req.headers['x-amz-date'];
    const match = typeof header === 'string' ? AUTH.exec(header) : null;
    if (match === null || typeof amzDate !== 'string' || !/^\d{8}T\d{6}Z$/.test(amzDate)) {
      this.authFailures++;
      throw new KmsError('IncompleteSignatureException', 'missing or malformed SigV4 Authorization / X-Amz-Date');
    }
    const [, accessKeyId, date, region, signedHeaders, signature] = match as unknown as string[];
    if (region !== this.region || !amzDate.startsWith(date!) || !signedHeaders!.split(';').includes('host')) {
      this.authFailures++;
      throw new KmsError('InvalidSignatureException', 'credential scope does not match the request');
    }
    if (this.#credentials === undefined) return;
    if (accessKeyId !== this.#credentials.accessKeyId) {
      this.authFailures++;
      throw new KmsError('UnrecognizedClientException', 'unknown access key');
    }
    const canonicalHeaders = signedHeaders!
      .split(';')
      .map((name) => `${name}:${String(req.headers[name] ?? '').trim().replace(/\s+/g, ' ')}\n`)
      .join('');
    const payloadHash = crypto.createHash('sha256').update(body).digest('hex');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const canonicalRequest = [req.method, url.pathname, url.searchParams.toString(), canonicalHeaders, signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${region}/kms/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
    let key: Buffer = Buffer.from(`AWS4${this.#credentials.secretAccessKey}`);
    for (const part of [date!, region!, 'kms', 'aws4_request']) key = hmac(key, part);
    const expected = hmac(key, stringToSign).toString('hex');
    if (!crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature!))) {
      this.authFailures++;
      throw new KmsError('InvalidSignatureException', 'signature does not match', 400);
    }
  }

  #key(id: unknown): StoredKey {
    if (typeof id !== 'string' || id.length === 0) throw new KmsError('ValidationException', 'KeyId is required');
    let keyId = id;
    const aliasArn = /^arn:aws:kms:[^:]+:\d{12}:(alias\/.+)$/.exec(id);
    if (aliasArn !== null) keyId = aliasArn[1]!;
    if (keyId.startsWith('alias/')) keyId = this.#aliases.get(keyId) ?? '';
    const keyArn = /^arn:aws:kms:[^:]+:\d{12}:key\/(.+)$/.exec(keyId);
    if (keyArn !== null) keyId = keyArn[1]!;
    const key = this.#keys.get(keyId);
    if (key === undefined || (id.startsWith('arn:') && aliasArn === null && key.arn !== id)) {
      throw new KmsError('NotFoundException', `Key '${id}' does not exist`);
    }
    return key;
  }

  #usableKey(id: unknown): StoredKey {
    const key = this.#key(id);
    if (!key.enabled) throw new KmsError('DisabledException', `${key.arn} is disabled.`);
    return key;
  }

  #encrypt(input: Record<string, unknown>): unknown {
    const key = this.#usableKey(input.KeyId);
    const plaintext = base64Field(input.Plaintext, 'Plaintext');
    if (plaintext.length === 0 || plaintext.length > 4096) throw new KmsError('ValidationException', 'Plaintext must be 1..4096 bytes');
    return { CiphertextBlob: seal(key, plaintext, context(input)).toString('base64'), KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  }

  #decrypt(input: Record<string, unknown>): unknown {
    const blob = base64Field(input.CiphertextBlob, 'CiphertextBlob');
    if (blob.length < 2 || blob[0] !== 1 || blob.length < 2 + blob[1]! + 12 + 16) {
      throw new KmsError('InvalidCiphertextException', 'ciphertext is not a KMS ciphertext');
    }
    const arn = blob.subarray(2, 2 + blob[1]!).toString('utf8');
    const owner = [...this.#keys.values()].find((k) => k.arn === arn);
    if (owner === undefined) throw new KmsError('InvalidCiphertextException', 'ciphertext does not belong to a known key');
    if (input.KeyId !== undefined && this.#key(input.KeyId).arn !== owner.arn) {
      throw new KmsError('IncorrectKeyException', 'the key ID in the request does not identify the key that encrypted the ciphertext');
    }
    if (!owner.enabled) throw new KmsError('DisabledException', `${owner.arn} is disabled.`);
    const rest = blob.subarray(2 + blob[1]!);
    const decipher = crypto.createDecipheriv('aes-256-gcm', owner.material, rest.subarray(0, 12));
    decipher.setAAD(Buffer.from(canonicalContext(context(input))));
    decipher.setAuthTag(rest.subarray(rest.length - 16));
    try {
      const plaintext = Buffer.concat([decipher.update(rest.subarray(12, rest.length - 16)), decipher.final()]);
      return { Plaintext: plaintext.toString('base64'), KeyId: owner.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    } catch {
      throw new KmsError('InvalidCiphertextException', '');
    }
  }

  #generateDataKey(input: Record<string, unknown>): unknown {
    const key = this.#usableKey(input.KeyId);
    let bytes: number;
    if (typeof input.NumberOfBytes === 'number') bytes = input.NumberOfBytes;
    else if (input.KeySpec === 'AES_256') bytes = 32;
    else if (input.KeySpec === 'AES_128') bytes = 16;
    else throw new KmsError('ValidationException', 'KeySpec or NumberOfBytes is required');
    if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) throw new KmsError('ValidationException', 'NumberOfBytes must be 1..1024');
    const plaintext = crypto.randomBytes(bytes);
    return { CiphertextBlob: seal(key, plaintext, context(input)).toString('base64'), Plaintext: plaintext.toString('base64'), KeyId: key.arn };
  }

  #metadata(key: StoredKey): unknown {
    return {
      AWSAccountId: ACCOUNT,
      KeyId: key.keyId,
      Arn: key.arn,
      CreationDate: key.created,
      Enabled: key.enabled,
      KeyState: key.enabled ? 'Enabled' : 'Disabled',
      KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: 'SYMMETRIC_DEFAULT',
      CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
      KeyManager: 'CUSTOMER',
      Origin: 'AWS_KMS',
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
      MultiRegion: false,
    };
  }
}

function seal(key: StoredKey, plaintext: Buffer, ctx: Record<string, string>): Buffer {
  const nonce = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', key.material, nonce);
  cipher.setAAD(Buffer.from(canonicalContext(ctx)));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const arn = Buffer.from(key.arn, 'utf8');
  return Buffer.concat([Buffer.from([1, arn.length]), arn, nonce, body, cipher.getAuthTag()]);
}

function context(input: Record<string, unknown>): Record<string, string> {
  const ctx = input.EncryptionContext;
  if (ctx === undefined) return {};
  if (ctx === null || typeof ctx !== 'object' || Object.values(ctx).some((v) => typeof v !== 'string')) {
    throw new KmsError('ValidationException', 'EncryptionContext must map strings to strings');
  }
  return ctx as Record<string, string>;
}

function canonicalContext(ctx: Record<string, string>): string {
  return JSON.stringify(Object.entries(ctx).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function base64Field(value: unknown, name: string): Buffer {
  if (typeof value !== 'string') throw new KmsError('ValidationException', `${name} is required`);
  return Buffer.from(value, 'base64');
}

function sha256hex(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}

function hmac(key: Buffer, data: string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}
