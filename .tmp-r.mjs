import { BatchBackend, Keystore } from './dist/src/crypto/index.js';
import crypto from 'node:crypto';
const ks = new Keystore(); ks.install(1,'storage',crypto.randomBytes(32)); const dek = ks.get(1);
const items = Array.from({length:1024},(_, i)=>({plaintext: crypto.randomBytes(64), flag:0, aad:{kind:'storage', valueHeader:new Uint8Array(9), storeKey: Buffer.from(`bench:key:${String(i).padStart(10,'0')}`)}}));
const b = new BatchBackend(); let c=0n;
const t=performance.now(); let n=0; while(performance.now()-t<4000){ b.sealBatch(dek,{prefix:new Uint8Array(4),start:c,count:1024},items); c+=1024n; n++; }
console.log('us/batch', ((performance.now()-t)*1000/n).toFixed(0));
