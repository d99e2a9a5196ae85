// The request executor the state machine (src/fsm RequestExecutor) calls on
// apply: validates requests decoded from the log, then applies them.

import { applyRequests } from './apply.js';
import type { KvReader, KvReply, KvWrite } from './types.js';
import { validateRequest } from './validate.js';

export const kvExecutor = {
  async execute(reader: KvReader, requests: readonly unknown[], nowMs: number): Promise<{ writes: KvWrite[]; results: KvReply[] }> {
    const { replies, writes } = await applyRequests(reader, requests.map(validateRequest), nowMs);
    return { writes, results: replies };
  },
};
