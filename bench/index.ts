// `npm run bench [-- all|suite ...]`: see bench/runner.ts. Each suite is a
// module bench/<name>.ts exporting `run(args: string[]): Promise<void>`,
// registered in bench/suites.ts.

import { runBench } from './runner.js';

process.exitCode = await runBench(process.argv.slice(2));
