// The KEK part's public door (SPEC §4.1): URI parsing, the provider
// interface, and the `aws-kms://`, `file://` and `env://` providers.

import { sealError } from '../errors/index.js';
import { AwsKmsKekProvider } from './aws-kms.js';
import { loadEnvKek, loadFileKek } from './local.js';
import type { KekProvider } from './provider.js';
import { parseKekUri } from './uri.js';

export {
  checkContext,
  kmsEncryptionContext,
  localWrapAad,
  timedUnwrap,
  type KekKind,
  type KekProvider,
  type TimedUnwrap,
  type WrapContext,
} from './provider.js';
export { parseKekUri, DEFAULT_KMS_MAX_ATTEMPTS, DEFAULT_KMS_TIMEOUT_MS, type AwsKmsSpec, type EnvSpec, type FileSpec, type KekSpec } from './uri.js';
export { LocalKekProvider, KEK_BYTES, LOCAL_WRAPPED_BYTES, loadEnvKek, loadFileKek } from './local.js';
export { AwsKmsKekProvider } from './aws-kms.js';

export interface KekOptions {
  /** `--kek-uri` */
  readonly kekUri?: string;
  /** `--kek-file`, same as `file://<path>` */
  readonly kekFile?: string;
  /** The node's data dir: a file KEK inside it is refused. */
  readonly dataDir?: string;
  /** Where `env://` reads from (and deletes); process.env by default. */
  readonly env?: NodeJS.ProcessEnv;
}

/** True when the options name a KEK at all. */
export function kekConfigured(options: KekOptions): boolean {
  return options.kekUri !== undefined || options.kekFile !== undefined;
}

/** Builds the provider named by `--kek-uri` or `--kek-file`. */
export function openKekProvider(options: KekOptions): KekProvider {
  if (options.kekUri !== undefined && options.kekFile !== undefined) {
    throw sealError('ErrKEKUri', 'give either --kek-uri or --kek-file, not both');
  }
  if (options.kekFile !== undefined) return loadFileKek(options.kekFile, options.dataDir);
  if (options.kekUri === undefined) throw sealError('ErrKEKRequired', 'no KEK configured: pass --kek-uri or --kek-file');
  const spec = parseKekUri(options.kekUri);
  switch (spec.kind) {
    case 'aws-kms':
      return new AwsKmsKekProvider(spec);
    case 'file':
      return loadFileKek(spec.path, options.dataDir);
    case 'env':
      return loadEnvKek(spec.variable, options.env);
  }
}
