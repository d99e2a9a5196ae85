// Deterministic entry payloads for the log tests: the content tells which
// index and term wrote it, so a reader can check every byte it gets back.

export function entryData(index: number, term: number): Uint8Array {
  const len = 20 + ((index * 7919) % 300);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (index * 31 + term * 17 + i) & 0xff;
  return out;
}
