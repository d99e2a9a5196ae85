// Child processes of tests run from the compiled tree (`npm test` builds
// first): this resolves a script under dist/ and fails clearly when missing.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest folder up with a package.json (works from test/ and from dist/test/). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

const ROOT = packageRoot();

export function distScript(relative: string): string {
  const file = path.join(ROOT, 'dist', relative);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` first (npm test does)`);
  return file;
}
