// The server part's door: the RESP server and its Engine interface, the
// single-node MemoryEngine, the admin HTTP API, and the RESP wire format.

export type { EncryptionOp, Engine, EngineBackup, EngineEncryption, EngineMembership, EngineRewrite, EngineStatus, ReadOptions } from './engine.js';
export { MemoryEngine, type MemoryEngineOptions } from './memory-engine.js';
export { DEFAULT_RESP_PORT, RespServer, type RespServerOptions } from './resp-server.js';
export { SERVER_VERSION } from './connection.js';
export { AdminServer, DEFAULT_ADMIN_PORT, ENCRYPTION_DISABLE_EXPLANATION, type AdminServerOptions } from './admin.js';
export { COMMANDS, type CommandSpec } from './commands.js';
export { respErrorFor, respErrorLine } from './errors.js';
export { loadSecret, type SecretSource } from './secrets.js';
export { serve, type RunningServer, type ServeOptions } from './serve.js';
export { DEFAULT_RESP_LIMITS, encodeCommand, RespParser, type RespCommand, type RespLimits } from './resp/index.js';
