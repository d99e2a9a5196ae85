// The durable part's door: crash-durable file replacement (tmp → fsync →
// rename → directory fsync), durable directory creation, and the probe that a
// filesystem provides them (SPEC §4.3).

export {
  PROBE_NAME,
  TMP_SUFFIX,
  ensureDirDurably,
  fsyncDirectory,
  fsyncDirectorySync,
  nodeDurableFs,
  probeDurableDir,
  writeFileDurably,
  writeFileDurablySync,
  type DurableFs,
} from './durable.js';
