// The `aws-kms://` KEK provider (SPEC §4.1): Encrypt/Decrypt of the 32-byte
// DEK through @aws-sdk/client-kms, with an encryption context naming the
// key_id and purpose, so KMS itself refuses to unwrap a DEK under another
// key_id or purpose.
//
// Region and endpoint come from the URI, else from the SDK's usual chain
// (AWS_REGION, shared config); credentials always come from the SDK's chain
// and never from the URI. Each call has a deadline covering all its
// attempts (`timeout_ms`, default 10 s) and at most `max_attempts` tries.
//
// Errors: unreachable, throttled, timed out, disabled or denied →
// ErrKEKUnavailable (retryable: an operator can fix it and restart);
// a ciphertext the key did not produce, a different key, an unknown key or a
// different context → ErrKEKMismatch.

import { DecryptCommand, EncryptCommand, KMSClient, type KMSClientConfig } from '@aws-sdk/client-kms';
import { DEK_BYTES } from '../crypto/index.js';
import { sealError, type SealError } from '../errors/index.js';
import { checkContext, checkWrapArgs, kmsEncryptionContext, type KekProvider, type WrapContext } from './provider.js';
import type { AwsKmsSpec } from './uri.js';

const MISMATCH = new Set(['InvalidCiphertextException', 'IncorrectKeyException', 'NotFoundException', 'InvalidKeyUsageException']);
const CONFIG = new Set(['ValidationException', 'InvalidArnException']);

export class AwsKmsKekProvider implements KekProvider {
  readonly kind = 'aws-kms' as const;
  readonly #spec: AwsKmsSpec;
  readonly #client: KMSClient;
  #closed = false;

  constructor(spec: AwsKmsSpec) {
    this.#spec = spec;
    const config: KMSClientConfig = {
      maxAttempts: spec.maxAttempts,
      requestHandler: { connectionTimeout: spec.timeoutMs, requestTimeout: spec.timeoutMs },
    };
    if (spec.region !== undefined) config.region = spec.region;
    if (spec.endpoint !== undefined) config.endpoint = spec.endpoint;
    this.#client = new KMSClient(config);
  }

  async wrap(dek: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    checkWrapArgs(dek, context);
    const out = await this.#call('wrap', context, (abortSignal) =>
      this.#client.send(
        new EncryptCommand({ KeyId: this.#spec.keyId, Plaintext: dek, EncryptionContext: kmsEncryptionContext(context) }),
        { abortSignal },
      ),
    );
    if (out.CiphertextBlob === undefined || out.CiphertextBlob.length === 0) {
      throw sealError('ErrKEKUnavailable', `KMS Encrypt for DEK ${context.keyId} returned no ciphertext`);
    }
    return out.CiphertextBlob;
  }

  async unwrap(wrapped: Uint8Array, context: WrapContext): Promise<Uint8Array> {
    checkContext(context);
    const out = await this.#call('unwrap', context, (abortSignal) =>
      this.#client.send(
        new DecryptCommand({ KeyId: this.#spec.keyId, CiphertextBlob: wrapped, EncryptionContext: kmsEncryptionContext(context) }),
        { abortSignal },
      ),
    );
    const dek = out.Plaintext;
    if (dek === undefined || dek.length !== DEK_BYTES) {
      dek?.fill(0);
      throw sealError('ErrKEKMismatch', `KMS Decrypt of DEK ${context.keyId} did not return a ${DEK_BYTES}-byte DEK`);
    }
    return dek;
  }

  describe(): string {
    const params = new URLSearchParams();
    if (this.#spec.region !== undefined) params.set('region', this.#spec.region);
    if (this.#spec.endpoint !== undefined) params.set('endpoint', this.#spec.endpoint);
    const query = params.toString();
    return `aws-kms://${this.#spec.keyId}${query === '' ? '' : `?${query}`}`;
  }

  close(): void {
    this.#closed = true;
    this.#client.destroy();
  }

  async #call<T>(op: 'wrap' | 'unwrap', context: WrapContext, send: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`${this.describe()} KEK provider is closed`);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#spec.timeoutMs);
    try {
      return await send(controller.signal);
    } catch (err) {
      throw this.#translate(op, context, err, controller.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  }

  #translate(op: string, context: WrapContext, err: unknown, timedOut: boolean): SealError {
    const what = `KMS ${op} of DEK ${context.keyId} (${context.purpose}) with ${this.describe()}`;
    if (timedOut) return sealError('ErrKEKUnavailable', `${what} timed out after ${this.#spec.timeoutMs} ms`, err);
    const name = (err as { name?: string } | null)?.name ?? 'Error';
    const message = (err as { message?: string } | null)?.message ?? String(err);
    if (MISMATCH.has(name)) return sealError('ErrKEKMismatch', `${what} refused: ${name}`, err);
    if (CONFIG.has(name) || /region is missing/i.test(message)) {
      return sealError('ErrKEKUri', `${what} is misconfigured: ${name}: ${message}`, err);
    }
    return sealError('ErrKEKUnavailable', `${what} failed: ${name}: ${message}`, err);
  }
}
