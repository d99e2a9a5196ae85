import { WasmCore, WasmBackend } from './dist/src/crypto/index.js';
import { gcm } from '@noble/ciphers/aes.js';
import crypto from 'node:crypto';
const core = new WasmCore(); const e = core.exports;
const io = core.reserve(1<<20); 
const key = crypto.randomBytes(32); const slot = core.slotFor(key);
const N=16384; const pt = crypto.randomBytes(N), nonce = crypto.randomBytes(12), aad = new Uint8Array(0);
const be = new WasmBackend();
function rate(f){ for(let i=0;i<200;i++) f(); let t=performance.now(), n=0; while(performance.now()-t<1000){ f(); n++; } return (performance.now()-t)*1000/n; }
for (let r=0;r<3;r++){
const raw = rate(()=>e.aeadSeal(slot, io, io+64, 0, io+1024, N, io+40000, 0));
const bk = rate(()=>be.aeadSeal(key, nonce, aad, pt));
const nb = rate(()=>gcm(key, nonce, aad).encrypt(pt));
console.log('raw us', raw.toFixed(1), 'backend us', bk.toFixed(1), 'noble us', nb.toFixed(1), 'ratio', (nb/bk).toFixed(2));
}
