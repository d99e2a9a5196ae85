// The command table of SPEC §12: each data command parses its arguments into
// a kv request (src/kv) that runs on the read or the replicated write path;
// connection commands (PING, AUTH, INFO, ...) are answered by the connection
// itself. Arity follows Redis: n means exactly n words including the command
// name, -n at least n. Argument errors use Redis' wording, because clients
// and tools match on it.

import { sealError } from '../errors/index.js';
import { decodeCursor, INT64_MIN, MAX_SCAN_COUNT, NOT_AN_INTEGER, parseInt64, type KvRequest } from '../kv/index.js';

export type CommandKind = 'read' | 'write' | 'connection';

export interface CommandSpec {
  name: string;
  arity: number;
  kind: CommandKind;
  /** Redis command flags, for COMMAND's reply. */
  flags: string[];
  firstKey: number;
  lastKey: number;
  keyStep: number;
  /** For read and write commands: the request (throws ErrBadRequest with Redis' text). */
  parse?: (args: Buffer[]) => KvRequest;
}

function badRequest(message: string): never {
  throw sealError('ErrBadRequest', message);
}

/** A strict base-10 int64, as Redis' string2ll. */
export function parseInt64Arg(arg: Buffer): bigint {
  return parseInt64(arg) ?? badRequest(NOT_AN_INTEGER);
}

/** An integer argument that must also fit a safe JS number (times, counts). */
function parseSafeInt(arg: Buffer, command: string, what: 'expire' | 'count'): number {
  const n = parseInt64Arg(arg);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < -BigInt(Number.MAX_SAFE_INTEGER)) {
    badRequest(what === 'expire' ? `invalid expire time in '${command}' command` : NOT_AN_INTEGER);
  }
  return Number(n);
}

/** Seconds or milliseconds → ms, refusing values whose ms would lose precision. */
function toMs(value: number, unit: 's' | 'ms', command: string): number {
  const ms = unit === 's' ? value * 1000 : value;
  if (!Number.isSafeInteger(ms)) badRequest(`invalid expire time in '${command}' command`);
  return ms;
}

const upper = (arg: Buffer): string => arg.toString('latin1').toUpperCase();

function parseSet(args: Buffer[]): KvRequest {
  const request: KvRequest & { op: 'set' } = { op: 'set', key: args[1]!, value: args[2]! };
  let expiring = false;
  for (let i = 3; i < args.length; i++) {
    const option = upper(args[i]!);
    const next = args[i + 1];
    if (option === 'NX' && request.condition === undefined) request.condition = 'nx';
    else if (option === 'XX' && request.condition === undefined) request.condition = 'xx';
    else if (option === 'GET' && request.returnOld !== true) request.returnOld = true;
    else if (option === 'KEEPTTL' && !expiring) {
      request.keepTtl = true;
      expiring = true;
    } else if ((option === 'EX' || option === 'PX' || option === 'EXAT' || option === 'PXAT') && !expiring && next !== undefined) {
      const n = parseSafeInt(next, 'set', 'expire');
      if (n <= 0) badRequest("invalid expire time in 'set' command");
      const ms = toMs(n, option === 'EX' || option === 'EXAT' ? 's' : 'ms', 'set');
      request.expire = option === 'EX' || option === 'PX' ? { inMs: ms } : { atMs: ms };
      expiring = true;
      i++;
    } else badRequest('syntax error');
  }
  return request;
}

/** SETEX key seconds value / PSETEX key ms value. */
function parseSetex(command: string, unit: 's' | 'ms') {
  return (args: Buffer[]): KvRequest => {
    const n = parseSafeInt(args[2]!, command, 'expire');
    if (n <= 0) badRequest(`invalid expire time in '${command}' command`);
    return { op: 'set', key: args[1]!, value: args[3]!, expire: { inMs: toMs(n, unit, command) } };
  };
}

function parseIncr(sign: 1n | -1n, fixed?: bigint) {
  return (args: Buffer[]): KvRequest => {
    const amount = fixed ?? parseInt64Arg(args[2]!);
    if (sign < 0n && amount === INT64_MIN) badRequest('decrement would overflow');
    return { op: 'incrby', key: args[1]!, delta: sign * amount };
  };
}

function parseExpire(command: string, unit: 's' | 'ms', absolute: boolean) {
  return (args: Buffer[]): KvRequest => {
    if (args.length > 3) badRequest(`unsupported option ${args[3]!.toString('latin1').slice(0, 32)}`);
    const ms = toMs(parseSafeInt(args[2]!, command, 'expire'), unit, command);
    return { op: 'expire', key: args[1]!, expire: absolute ? { atMs: ms } : { inMs: ms } };
  };
}

function parseScan(args: Buffer[]): KvRequest {
  let after: Buffer | null;
  try {
    after = decodeCursor(args[1]!.toString('latin1'));
  } catch {
    badRequest('invalid cursor');
  }
  const request: KvRequest & { op: 'scan' } = { op: 'scan', after, count: 10 };
  for (let i = 2; i < args.length; i += 2) {
    const option = upper(args[i]!);
    const value = args[i + 1];
    if (value === undefined) badRequest('syntax error');
    if (option === 'MATCH') request.match = value;
    else if (option === 'COUNT') {
      const count = parseSafeInt(value, 'scan', 'count');
      if (count < 1) badRequest('syntax error');
      request.count = Math.min(count, MAX_SCAN_COUNT);
    } else badRequest('syntax error');
  }
  return request;
}

function pairs(args: Buffer[]): [Buffer, Buffer][] {
  if (args.length % 2 === 0) badRequest(`wrong number of arguments for '${args[0]!.toString('latin1').toLowerCase()}' command`);
  const entries: [Buffer, Buffer][] = [];
  for (let i = 1; i < args.length; i += 2) entries.push([args[i]!, args[i + 1]!]);
  return entries;
}

type DataSpec = [name: string, arity: number, kind: 'read' | 'write', keys: [number, number, number], parse: (args: Buffer[]) => KvRequest];

const DATA_COMMANDS: DataSpec[] = [
  ['get', 2, 'read', [1, 1, 1], (a) => ({ op: 'get', key: a[1]! })],
  ['set', -3, 'write', [1, 1, 1], parseSet],
  ['getdel', 2, 'write', [1, 1, 1], (a) => ({ op: 'getdel', key: a[1]! })],
  ['del', -2, 'write', [1, -1, 1], (a) => ({ op: 'del', keys: a.slice(1) })],
  ['unlink', -2, 'write', [1, -1, 1], (a) => ({ op: 'del', keys: a.slice(1) })],
  ['setex', 4, 'write', [1, 1, 1], parseSetex('setex', 's')],
  ['psetex', 4, 'write', [1, 1, 1], parseSetex('psetex', 'ms')],
  ['getset', 3, 'write', [1, 1, 1], (a) => ({ op: 'set', key: a[1]!, value: a[2]!, returnOld: true })],
  ['exists', -2, 'read', [1, -1, 1], (a) => ({ op: 'exists', keys: a.slice(1) })],
  ['mget', -2, 'read', [1, -1, 1], (a) => ({ op: 'mget', keys: a.slice(1) })],
  ['mset', -3, 'write', [1, -1, 2], (a) => ({ op: 'mset', entries: pairs(a) })],
  ['incr', 2, 'write', [1, 1, 1], parseIncr(1n, 1n)],
  ['decr', 2, 'write', [1, 1, 1], parseIncr(-1n, 1n)],
  ['incrby', 3, 'write', [1, 1, 1], parseIncr(1n)],
  ['decrby', 3, 'write', [1, 1, 1], parseIncr(-1n)],
  ['append', 3, 'write', [1, 1, 1], (a) => ({ op: 'append', key: a[1]!, value: a[2]! })],
  ['strlen', 2, 'read', [1, 1, 1], (a) => ({ op: 'strlen', key: a[1]! })],
  ['type', 2, 'read', [1, 1, 1], (a) => ({ op: 'type', key: a[1]! })],
  ['expire', -3, 'write', [1, 1, 1], parseExpire('expire', 's', false)],
  ['pexpire', -3, 'write', [1, 1, 1], parseExpire('pexpire', 'ms', false)],
  ['expireat', -3, 'write', [1, 1, 1], parseExpire('expireat', 's', true)],
  ['pexpireat', -3, 'write', [1, 1, 1], parseExpire('pexpireat', 'ms', true)],
  ['persist', 2, 'write', [1, 1, 1], (a) => ({ op: 'persist', key: a[1]! })],
  ['ttl', 2, 'read', [1, 1, 1], (a) => ({ op: 'ttl', key: a[1]!, unit: 's' })],
  ['pttl', 2, 'read', [1, 1, 1], (a) => ({ op: 'ttl', key: a[1]!, unit: 'ms' })],
  ['scan', -2, 'read', [0, 0, 0], parseScan],
  ['dbsize', 1, 'read', [0, 0, 0], () => ({ op: 'dbsize' })],
];

/** Connection commands: name, arity. */
const CONNECTION_COMMANDS: [string, number, string[]][] = [
  ['ping', -1, ['fast', 'stale']],
  ['echo', 2, ['fast']],
  ['auth', -2, ['noscript', 'loading', 'stale', 'fast', 'no_auth']],
  ['hello', -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth']],
  ['select', 2, ['loading', 'stale', 'fast']],
  ['client', -2, ['noscript', 'loading', 'stale']],
  ['info', -1, ['loading', 'stale']],
  ['command', -1, ['loading', 'stale']],
  ['config', -2, ['admin', 'noscript', 'loading', 'stale']],
  ['quit', -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth']],
];

export const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map<string, CommandSpec>([
  ...DATA_COMMANDS.map(([name, arity, kind, [firstKey, lastKey, keyStep], parse]): [string, CommandSpec] => [
    name,
    { name, arity, kind, flags: kind === 'write' ? ['write', 'denyoom'] : ['readonly', 'fast'], firstKey, lastKey, keyStep, parse },
  ]),
  ...CONNECTION_COMMANDS.map(([name, arity, flags]): [string, CommandSpec] => [
    name,
    { name, arity, kind: 'connection', flags, firstKey: 0, lastKey: 0, keyStep: 0 },
  ]),
]);

/** The spec for a command word, case-insensitively. */
export function lookupCommand(word: Buffer): CommandSpec | undefined {
  return word.length > 16 ? undefined : COMMANDS.get(word.toString('latin1').toLowerCase());
}

export function arityOk(spec: CommandSpec, argc: number): boolean {
  return spec.arity >= 0 ? argc === spec.arity : argc >= -spec.arity;
}

/** Redis' reply to an unknown command, with the first arguments quoted and truncated. */
export function unknownCommandMessage(args: Buffer[]): string {
  const shown = args
    .slice(1, 4)
    .map((a) => `'${a.toString('latin1', 0, 128)}'`)
    .join(' ');
  return `unknown command '${args[0]!.toString('latin1', 0, 128)}', with args beginning with: ${shown}${shown === '' ? '' : ' '}`;
}
