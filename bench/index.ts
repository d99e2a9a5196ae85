// `npm run bench [-- suite ...]`: runs the named benchmark suites (all when
// none is named). Each suite is a module bench/<name>.ts exporting
// `run(args: string[]): Promise<void>`.

import { SUITES } from './suites.js';

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  const names = first === undefined || first === 'all' ? Object.keys(SUITES) : [first];
  for (const name of names) {
    const load = SUITES[name];
    if (load === undefined) {
      console.error(`unknown bench suite "${name}"; known: ${Object.keys(SUITES).join(', ')}`);
      process.exit(2);
    }
    const suite = await load();
    await suite.run(rest);
  }
}

await main();
