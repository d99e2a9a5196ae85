// The encryption part's door: the cluster-wide rollout (SPEC §8; see README.md).

export {
  CAPABILITY_METHOD,
  decodeCapability,
  pollCapabilities,
  type Capability,
  type CapabilityFailure,
  type CapabilityMember,
} from './capability.js';
