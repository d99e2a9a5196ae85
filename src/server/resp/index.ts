// RESP2 wire format: the streaming request parser and the reply encoder.
export { DEFAULT_RESP_LIMITS, RespParser, splitInline, type RespCommand, type RespLimits } from './parser.js';
export { encodeCommand, encodeError, encodeInteger, encodeStatus, pushArrayHeader, pushBulk, pushReply } from './encoder.js';
