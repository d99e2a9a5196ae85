// Redis glob patterns for SCAN MATCH, over bytes: `*`, `?`, `[abc]`, `[^a-z]`
// and `\` escapes, as Redis' stringmatchlen. The pattern compiles once to
// tokens; matching is the greedy two-pointer walk that backtracks only to the
// last `*`, so it is O(key × pattern) at worst, never exponential.

type Token = { kind: 'star' } | { kind: 'one'; test: (byte: number) => boolean };

function compile(pattern: Buffer): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === 0x2a /* * */) {
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === 0x3f /* ? */) {
      tokens.push({ kind: 'one', test: () => true });
      i++;
    } else if (c === 0x5b /* [ */) {
      i++;
      const negate = pattern[i] === 0x5e; /* ^ */
      if (negate) i++;
      const ranges: [number, number][] = [];
      while (i < pattern.length && pattern[i] !== 0x5d /* ] */) {
        let lo = pattern[i]!;
        if (lo === 0x5c && i + 1 < pattern.length) lo = pattern[++i]!;
        if (pattern[i + 1] === 0x2d /* - */ && i + 2 < pattern.length && pattern[i + 2] !== 0x5d) {
          let hi = pattern[i + 2]!;
          if (hi === 0x5c && i + 3 < pattern.length) hi = pattern[++i + 2]!;
          ranges.push(lo <= hi ? [lo, hi] : [hi, lo]);
          i += 3;
        } else {
          ranges.push([lo, lo]);
          i++;
        }
      }
      i++; // the closing ']' (Redis also accepts an unclosed class)
      tokens.push({ kind: 'one', test: (b) => ranges.some(([lo, hi]) => b >= lo && b <= hi) !== negate });
    } else {
      const literal = c === 0x5c && i + 1 < pattern.length ? pattern[++i]! : c;
      tokens.push({ kind: 'one', test: (b) => b === literal });
      i++;
    }
  }
  return tokens;
}

/** A matcher for one pattern. */
export function globMatcher(pattern: Buffer): (key: Buffer) => boolean {
  const tokens = compile(pattern);
  if (tokens.length === 1 && tokens[0]!.kind === 'star') return () => true;
  return (key) => {
    let t = 0;
    let k = 0;
    let starT = -1;
    let starK = 0;
    while (k < key.length) {
      const token = tokens[t];
      if (token?.kind === 'star') {
        starT = t++;
        starK = k;
      } else if (token !== undefined && token.test(key[k]!)) {
        t++;
        k++;
      } else if (starT >= 0) {
        t = starT + 1;
        k = ++starK;
      } else {
        return false;
      }
    }
    while (tokens[t]?.kind === 'star') t++;
    return t === tokens.length;
  };
}
