// Backend selection (SPEC §3.5): `createBackend(name)` makes a backend by
// its `--crypto-backend` name.

import type { BackendName, CryptoBackend } from './backend.js';
import { AesniBackend } from './aesni.js';
import { NobleBackend } from './noble.js';

export type BackendChoice = BackendName | 'auto';

export function createBackend(name: BackendChoice): CryptoBackend {
  switch (name) {
    case 'aesni':
    case 'auto':
      return new AesniBackend();
    case 'noble':
      return new NobleBackend();
    default:
      throw new RangeError(`crypto backend "${name}" is not available`);
  }
}
