// Runs the golden interaction scripts in testdata/ (see interaction.ts).

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InteractionEnv, parseScript, renderScript } from './interaction.js';

const dir = join(import.meta.dirname, 'testdata');
const rewrite = process.env.RAFT_GOLDEN_REWRITE === '1';

describe('raft interaction scripts', () => {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()) {
    it(file, () => {
      const path = join(dir, file);
      const blocks = parseScript(readFileSync(path, 'utf8'));
      const env = new InteractionEnv();
      for (const b of blocks) {
        const [cmd, ...args] = b.command.split(/\s+/);
        const actual = env.run(cmd!, args);
        if (rewrite) b.expected = actual;
        else expect(actual.join('\n'), `${file}: ${b.command}`).toBe(b.expected.join('\n'));
      }
      if (rewrite) writeFileSync(path, renderScript(blocks));
    });
  }
});
