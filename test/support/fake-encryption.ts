// A scripted EngineEncryption for the admin API and CLI tests: records every
// call (the op name, or `{verify}` for status), answers each op with
// `{op, ...result}`, and throws `refusal` while one is set.

import type { SealError } from '../../src/errors/index.js';
import { MemoryEngine, type EngineEncryption } from '../../src/server/index.js';

export interface FakeEncryption extends EngineEncryption {
  calls: unknown[];
  refusal: SealError | null;
}

export function fakeEncryption(result: Record<string, unknown>, status: (verify: boolean) => Record<string, unknown>): FakeEncryption {
  const fake: FakeEncryption = {
    calls: [],
    refusal: null,
    run: async (op) => {
      fake.calls.push(op);
      if (fake.refusal !== null) throw fake.refusal;
      return { op, ...result };
    },
    status: async ({ verify }) => {
      fake.calls.push({ verify });
      return status(verify);
    },
  };
  return fake;
}

/** A MemoryEngine that has `encryption`, as a replicated engine does. */
export function encryptingMemoryEngine(encryption: EngineEncryption): MemoryEngine & { encryption: EngineEncryption } {
  return Object.assign(new MemoryEngine(), { encryption });
}
