// Loads the AES-256-GCM test vectors of ../shared/vectors (sources and
// checksums in its README): Wycheproof aes_gcm_test.json and the NIST CAVP
// GCMVS files. Only the cases our envelope can express are returned:
// 256-bit key, 96-bit IV; decrypt cases with a full 128-bit tag. Encrypt
// cases with a truncated tag are kept: a backend's full tag must start with
// the truncated one.
//
// The folder is found beside the repository (as CI lays it out) unless
// SEALKV_VECTORS_DIR names another.

import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from './dist.js';

export interface GcmVector {
  /** Where the case came from, e.g. `wycheproof/aes_gcm/tcId 17`. */
  label: string;
  key: Uint8Array;
  iv: Uint8Array;
  aad: Uint8Array;
  plaintext: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
  /** false: opening must fail authentication. */
  valid: boolean;
}

export function vectorsDir(): string {
  if (process.env.SEALKV_VECTORS_DIR) return process.env.SEALKV_VECTORS_DIR;
  return path.resolve(packageRoot(), '../shared/vectors');
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

export function wycheproofGcm(): GcmVector[] {
  const file = path.join(vectorsDir(), 'wycheproof_aes_gcm_test.json');
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    testGroups: { keySize: number; ivSize: number; tagSize: number; tests: Record<string, unknown>[] }[];
  };
  const out: GcmVector[] = [];
  for (const group of doc.testGroups) {
    if (group.keySize !== 256 || group.ivSize !== 96 || group.tagSize !== 128) continue;
    for (const t of group.tests) {
      out.push({
        label: `wycheproof/aes_gcm/tcId ${t.tcId as number}`,
        key: hex(t.key as string),
        iv: hex(t.iv as string),
        aad: hex(t.aad as string),
        plaintext: hex(t.msg as string),
        ciphertext: hex(t.ct as string),
        tag: hex(t.tag as string),
        valid: t.result === 'valid',
      });
    }
  }
  return out;
}

/** NIST CAVP GCMVS records with IVlen 96 (CRLF files: lines are trimmed). */
export function nistGcm(kind: 'encrypt' | 'decrypt'): GcmVector[] {
  const name = kind === 'encrypt' ? 'nist_gcmEncryptExtIV256.rsp' : 'nist_gcmDecrypt256.rsp';
  const lines = fs.readFileSync(path.join(vectorsDir(), name), 'latin1').split('\n').map((l) => l.trim());
  const out: GcmVector[] = [];
  const params: Record<string, number> = {};
  let rec: Record<string, string> = {};
  let fail = false;
  const flush = (): void => {
    if (rec.Count === undefined) return;
    const keep = params.IVlen === 96 && (kind === 'encrypt' || params.Taglen === 128);
    if (keep) {
      out.push({
        label: `nist/${name}/IVlen ${params.IVlen} PTlen ${params.PTlen} AADlen ${params.AADlen} Taglen ${params.Taglen}/Count ${rec.Count}`,
        key: hex(rec.Key ?? ''),
        iv: hex(rec.IV ?? ''),
        aad: hex(rec.AAD ?? ''),
        plaintext: hex(rec.PT ?? ''),
        ciphertext: hex(rec.CT ?? ''),
        tag: hex(rec.Tag ?? ''),
        valid: !fail,
      });
    }
    rec = {};
    fail = false;
  };
  for (const line of lines) {
    const section = /^\[(\w+) = (\d+)\]$/.exec(line);
    if (section) {
      flush();
      params[section[1]!] = Number(section[2]);
    } else if (line === 'FAIL') {
      fail = true;
    } else if (line.includes(' = ') || line.endsWith(' =')) {
      const [k, v = ''] = line.split(/ = ?/);
      if (k === 'Count') flush();
      rec[k!] = v.trim();
    } else if (line === '') {
      flush();
    }
  }
  flush();
  return out;
}
