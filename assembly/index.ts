// sealkv WASM crypto core: entry module.
//
// The AES-256 / GHASH / GCM and batch envelope code lands here (see the
// WASM crypto issue). Until then the module only reports its ABI version so
// the loader and the build pipeline are exercised end to end.

/** ABI version of the exported functions; bumped on any incompatible change. */
export function abiVersion(): u32 {
  return 1;
}
