// The benchmark suites, by name. One line per suite: `bench all` runs every
// suite listed here, in this order.

export interface BenchSuite {
  run(args: string[]): Promise<void>;
}

export const SUITES: Record<string, () => Promise<BenchSuite>> = {
  crypto: () => import('./crypto.js'),
  'crypto-targets': () => import('./crypto-targets.js'),
  kek: () => import('./kek.js'),
  raft: () => import('./raft.js'),
  store: () => import('./store.js'),
  resp: () => import('./resp.js'),
  'redis-compat': () => import('./redis-compat.js'),
  rollout: () => import('./rollout.js'),
  rewrite: () => import('./rewrite.js'),
  'rewrite-online': () => import('./rewrite-online.js'),
  e2e: () => import('./e2e.js'),
};

/** Arguments `bench all` adds for a suite (it never installs system packages). */
export const ALL_ARGS: Record<string, string[]> = {
  'redis-compat': ['--no-install'],
};

/** Arguments `bench all --quick` adds after `--quick`, to keep the quick run short. */
export const QUICK_ARGS: Record<string, string[]> = {
  crypto: ['--no-masked'],
  store: ['--sizes=1024'],
};
