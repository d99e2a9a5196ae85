// Transitional: the durable-write helpers live in src/durable. sidecar.ts and
// startup.ts still import them from here; this file goes once they import
// from '../durable/index.js'.

export { nodeDurableFs, probeDurableDir, writeFileDurably, TMP_SUFFIX, type DurableFs } from '../durable/index.js';
