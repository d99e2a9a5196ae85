// The fault campaign's soak switch: SEALKV_FAULT_SOAK=1 runs more seeds,
// inputs and damage rounds than the default CI run (which stays short).

export const SOAK = process.env.SEALKV_FAULT_SOAK === '1';

/** `quick` in a CI run, `soak` under SEALKV_FAULT_SOAK=1. */
export function soakOr<T>(quick: T, soak: T): T {
  return SOAK ? soak : quick;
}
