// `sealkv bench [all|suite] [--quick] [suite args]`: the benchmark suites of
// bench/ (SPEC §14), run from the compiled tree. `all` writes the report
// under bench/results/ (see bench/runner.ts). Loaded only when asked for.

import { Command } from 'commander';

export function benchCommand(): Command {
  return new Command('bench')
    .description('run the benchmark suites (all by default) and write the report under bench/results/')
    .argument('[suite]', 'a suite name, or all', 'all')
    .argument('[args...]', 'flags: --quick (short run), --skip a,b; or the suite\'s own flags')
    .allowUnknownOption()
    .action(async (suite: string, args: string[]) => {
      const { runBench } = await import('../../bench/runner.js');
      process.exitCode = await runBench([suite, ...args]);
    });
}
