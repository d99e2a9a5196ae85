// Parsing of `--kek-uri` (SPEC §4.1). Every malformed URI is ErrKEKUri with
// a message naming what is wrong; the URI itself never carries secrets, so
// it may appear in the message.
//
//   aws-kms://<key-id | arn | alias/name>?region=..&endpoint=..&timeout_ms=..&max_attempts=..
//   file://<path>          (file:///abs/path or file://relative/path)
//   env://<VARIABLE>

import { sealError } from '../errors/index.js';
import type { KekKind } from './provider.js';

export interface AwsKmsSpec {
  readonly kind: 'aws-kms';
  readonly keyId: string;
  readonly region?: string;
  readonly endpoint?: string;
  /** Deadline of one wrap/unwrap call, all retries included. */
  readonly timeoutMs: number;
  /** Attempts per call, the first one included. */
  readonly maxAttempts: number;
}

export interface FileSpec {
  readonly kind: 'file';
  readonly path: string;
}

export interface EnvSpec {
  readonly kind: 'env';
  readonly variable: string;
}

export type KekSpec = AwsKmsSpec | FileSpec | EnvSpec;

export const DEFAULT_KMS_TIMEOUT_MS = 10_000;
export const DEFAULT_KMS_MAX_ATTEMPTS = 3;

const SCHEMES: Record<string, KekKind> = { 'aws-kms://': 'aws-kms', 'file://': 'file', 'env://': 'env' };
const KMS_KEY_ID = /^(?:[0-9a-fA-F-]{1,64}|mrk-[0-9a-fA-F]{32}|alias\/[A-Za-z0-9/_-]{1,250}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key\/[A-Za-z0-9-]{1,64}|alias\/[A-Za-z0-9/_-]{1,250}))$/;
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const KMS_PARAMS = new Set(['region', 'endpoint', 'timeout_ms', 'max_attempts']);

export function parseKekUri(uri: string): KekSpec {
  if (typeof uri !== 'string' || uri.length === 0) throw bad(String(uri), 'empty');
  if (uri.length > 2048) throw bad(uri.slice(0, 32) + '…', 'longer than 2048 characters');
  if (/[\s\0]/.test(uri)) throw bad(uri, 'contains whitespace or NUL');
  const scheme = Object.keys(SCHEMES).find((s) => uri.startsWith(s));
  if (scheme === undefined) throw bad(uri, 'unknown scheme (expected aws-kms://, file:// or env://)');
  const rest = uri.slice(scheme.length);
  switch (SCHEMES[scheme]) {
    case 'aws-kms':
      return parseKms(uri, rest);
    case 'file':
      return parseFile(uri, rest);
    default:
      return parseEnv(uri, rest);
  }
}

function parseKms(uri: string, rest: string): AwsKmsSpec {
  const q = rest.indexOf('?');
  const keyPart = q === -1 ? rest : rest.slice(0, q);
  if (keyPart.length === 0) throw bad(uri, 'missing KMS key id');
  if (rest.includes('#')) throw bad(uri, 'fragments are not allowed');
  const keyId = decode(uri, keyPart);
  if (!KMS_KEY_ID.test(keyId)) throw bad(uri, 'KMS key must be a key id, mrk- id, alias/<name> or a KMS key/alias ARN');
  const params = new URLSearchParams(q === -1 ? '' : rest.slice(q + 1));
  const seen = new Set<string>();
  for (const [name] of params) {
    if (!KMS_PARAMS.has(name)) throw bad(uri, `unknown parameter "${name}" (known: ${[...KMS_PARAMS].join(', ')})`);
    if (seen.has(name)) throw bad(uri, `parameter "${name}" given twice`);
    seen.add(name);
  }
  const arnRegion = keyId.startsWith('arn:') ? keyId.split(':')[3] : undefined;
  const region = params.get('region') ?? undefined;
  if (region !== undefined && !REGION.test(region)) throw bad(uri, `region "${region}" is not a region name`);
  if (region !== undefined && arnRegion !== undefined && region !== arnRegion) {
    throw bad(uri, `region "${region}" disagrees with the key ARN's region "${arnRegion}"`);
  }
  const endpoint = params.get('endpoint') ?? undefined;
  if (endpoint !== undefined) checkEndpoint(uri, endpoint);
  const effectiveRegion = region ?? arnRegion;
  return {
    kind: 'aws-kms',
    keyId,
    ...(effectiveRegion !== undefined ? { region: effectiveRegion } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
    timeoutMs: intParam(uri, params, 'timeout_ms', DEFAULT_KMS_TIMEOUT_MS, 1, 600_000),
    maxAttempts: intParam(uri, params, 'max_attempts', DEFAULT_KMS_MAX_ATTEMPTS, 1, 10),
  };
}

function checkEndpoint(uri: string, endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw bad(uri, `endpoint "${endpoint}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(uri, 'endpoint must be http:// or https://');
  if (url.username !== '' || url.password !== '') throw bad(uri, 'endpoint must not carry credentials');
  if (url.search !== '' || url.hash !== '') throw bad(uri, 'endpoint must not carry a query or fragment');
}

function intParam(uri: string, params: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = params.get(name);
  if (raw === null) return fallback;
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw bad(uri, `${name} must be an integer in [${min}, ${max}]`);
  }
  return Number(raw);
}

function parseFile(uri: string, rest: string): FileSpec {
  if (rest.length === 0) throw bad(uri, 'missing path');
  if (rest.includes('?') || rest.includes('#')) throw bad(uri, 'file URIs take no query or fragment');
  const path = decode(uri, rest);
  if (path.includes('\0')) throw bad(uri, 'path contains NUL');
  return { kind: 'file', path };
}

function parseEnv(uri: string, rest: string): EnvSpec {
  if (!ENV_NAME.test(rest)) throw bad(uri, 'expected env://<VARIABLE_NAME> (letters, digits, underscore)');
  return { kind: 'env', variable: rest };
}

function decode(uri: string, part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw bad(uri, 'bad percent-encoding');
  }
}

function bad(uri: string, reason: string) {
  return sealError('ErrKEKUri', `KEK URI "${uri}": ${reason}`);
}
