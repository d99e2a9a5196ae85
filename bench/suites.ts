// The benchmark suites, by name. One line per suite.

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
};
