// The benchmark suites, by name. One line per suite.

export interface BenchSuite {
  run(args: string[]): Promise<void>;
}

export const SUITES: Record<string, () => Promise<BenchSuite>> = {
  crypto: () => import('./crypto.js'),
  resp: () => import('./resp.js'),
  store: () => import('./store.js'),
  'redis-compat': () => import('./redis-compat.js'),
  raft: () => import('./raft.js'),
};
