// One client connection of the RESP server: parses pipelined commands, runs
// them on the Engine and writes replies in request order.
//
// Parsed commands wait in a queue that one pump drains: connection commands
// are answered on the spot; a run of consecutive data commands of the same
// kind (reads, or writes) goes to the engine as one call — so a pipelined
// burst of SETs is one replicated batch — and the next run starts only after
// it returns, so a read always sees the connection's own earlier writes. A
// connection that sends faster than it reads its replies is paused (queue
// or unsent-output bounds) instead of buffering without limit; the replies of
// one engine call are held whole, so `maxBatch` times the largest reply
// bounds what one slow client can pin.
//
// Framing errors answer `-ERR Protocol error: ...` after the replies to
// everything parsed before them, then close the connection (as Redis does);
// a malformed command (unknown, wrong arity, bad argument) gets an error reply
// and the connection stays usable.

import type net from 'node:net';
import type { ErrorCode } from '../errors/index.js';
import { globMatcher, type KvReply, type KvRequest } from '../kv/index.js';
import { CommandQueue } from './command-queue.js';
import { arityOk, COMMANDS, lookupCommand, unknownCommandMessage, type CommandSpec } from './commands.js';
import { respErrorFor, respErrorLine, sealErrorDetail } from './errors.js';
import {
  encodeError,
  encodeInteger,
  encodeStatus,
  pushArrayHeader,
  pushBulk,
  pushReply,
  RespParser,
  type RespCommand,
} from './resp/index.js';
import type { RespServer } from './resp-server.js';

export const SERVER_VERSION = '0.1.0';

const OK = encodeStatus('OK');
const NOAUTH = encodeError('NOAUTH', 'Authentication required.');
const WRONGPASS = encodeError('WRONGPASS', 'invalid username-password pair or user is disabled.');

function errLine(code: ErrorCode, detail: string): Buffer {
  return respErrorLine(code, detail);
}

/** A command checked against the table: either an immediate reply or a data request. */
type Prepared =
  | { kind: 'reply'; name: string; out: Buffer[]; error?: string; after?: 'close' }
  | { kind: 'read' | 'write'; name: string; request: KvRequest; bytes: number };

export class Connection {
  readonly #server: RespServer;
  readonly #socket: net.Socket;
  readonly #id: number;
  readonly #parser: RespParser;
  readonly #queue = new CommandQueue();
  /** Reused buffer for the parser's output. */
  readonly #parsed: RespCommand[] = [];
  #authenticated: boolean;
  #name: Buffer | null = null;
  #pumping = false;
  #paused = false;
  /** A framing error to answer once the queue is drained; then the connection closes. */
  #fatal: Buffer | null = null;
  #closing = false;
  /** The client sent FIN: answer what it sent, then close. */
  #peerEnded = false;

  constructor(server: RespServer, socket: net.Socket, id: number) {
    this.#server = server;
    this.#socket = socket;
    this.#id = id;
    this.#parser = new RespParser(server.limits);
    this.#authenticated = !server.config.authRequired;
    const idle = server.config.idleTimeoutMs;
    if (idle > 0) {
      socket.setTimeout(idle, () => {
        server.countClosed('idle_timeout');
        socket.destroy();
      });
    }
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#maybeResume());
    socket.on('error', (err) => server.log.debug({ err, client: id }, 'client socket error'));
    socket.once('end', () => {
      this.#peerEnded = true;
      if (!this.#pumping && this.#queue.length === 0) this.#end();
    });
    socket.once('close', () => {
      this.#queue.clear();
      this.#closing = true;
    });
  }

  /** Server shutdown: stop reading, finish the running batch, close. */
  shutdown(): void {
    this.#closing = true;
    this.#queue.clear();
    this.#socket.pause();
    if (!this.#pumping) this.#end();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /**
   * Sends `last` (if any) and everything queued, then closes both directions:
   * the server accepts half-open sockets so that a client's FIN does not cut
   * its replies, so a plain end() would leave the socket open until the
   * client closes.
   */
  #end(last?: Buffer): void {
    const socket = this.#socket;
    if (last !== undefined) socket.write(last);
    socket.end(() => socket.destroy());
  }

  #onData(chunk: Buffer): void {
    if (this.#closing || this.#fatal !== null) return;
    const parsed = this.#parsed;
    const error = this.#parser.feed(chunk, parsed);
    this.#queue.push(parsed);
    const added = parsed.length;
    parsed.length = 0;
    if (error !== undefined) {
      this.#server.metrics?.requestErrors.inc({ command: 'protocol', error: error.code });
      this.#server.countClosed('protocol_error');
      this.#server.log.info({ client: this.#id, remote: this.#socket.remoteAddress, code: error.code }, 'closing connection on a protocol error');
      this.#fatal = errLine(error.code, sealErrorDetail(error));
      this.#socket.pause();
    }
    const { maxPending, maxPendingBytes } = this.#server.config;
    if (this.#queue.length >= maxPending || this.#queue.bytes >= maxPendingBytes) this.#pause();
    if (added > 0 || this.#fatal !== null) void this.#pump();
  }

  #pause(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  #maybeResume(): void {
    if (!this.#paused || this.#fatal !== null || this.#closing) return;
    const { maxPending, maxPendingBytes, maxOutput } = this.#server.config;
    if (this.#queue.length < maxPending / 2 && this.#queue.bytes < maxPendingBytes / 2 && this.#socket.writableLength < maxOutput) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    const out: Buffer[] = [];
    const counts = new Map<string, number>();
    try {
      while (this.#queue.length > 0 && !this.#closing) {
        const first = this.#prepare(this.#queue.take()!);
        if (first.kind === 'reply') {
          out.push(...first.out);
          this.#count(counts, first.name, first.error);
          if (first.after === 'close') {
            this.#closing = true;
            this.#queue.clear();
          }
          continue;
        }
        // Extend the run with the following data commands of the same kind;
        // ones that fail to parse ride along as ready-made error replies.
        const { maxBatch, maxBatchBytes } = this.#server.config;
        const batch: Prepared[] = [first];
        let bytes = first.bytes;
        while (batch.length < maxBatch && bytes < maxBatchBytes && this.#queue.length > 0) {
          const spec = lookupCommand(this.#queue.peek()![0]!);
          if (spec?.kind !== first.kind || !this.#authenticated) break;
          const next = this.#prepare(this.#queue.take()!);
          if (next.kind !== 'reply') bytes += next.bytes;
          batch.push(next);
        }
        // Replies already computed go out before waiting on the engine.
        this.#flush(out);
        await this.#runBatch(first.kind, batch, out, counts);
        this.#flush(out);
        this.#recordCounts(counts);
        await this.#drained();
        this.#maybeResume();
      }
    } catch (err) {
      this.#server.log.error({ err, client: this.#id }, 'connection pump failed');
      this.#socket.destroy();
    } finally {
      this.#pumping = false;
    }
    this.#flush(out);
    this.#recordCounts(counts);
    if (this.#socket.destroyed) return;
    if (this.#fatal !== null && this.#queue.length === 0 && !this.#closing) this.#end(this.#fatal);
    else if (this.#closing || (this.#peerEnded && this.#queue.length === 0)) this.#end();
    else this.#maybeResume();
  }

  async #runBatch(kind: 'read' | 'write', batch: Prepared[], out: Buffer[], counts: Map<string, number>): Promise<void> {
    const requests: KvRequest[] = [];
    for (const p of batch) if (p.kind !== 'reply') requests.push(p.request);
    const metrics = this.#server.metrics;
    const stop = metrics?.requestBatchSeconds.startTimer({ path: kind });
    let replies: KvReply[] | undefined;
    let failure: unknown;
    try {
      const engine = this.#server.engine;
      replies = kind === 'write' ? await engine.execute(requests) : await engine.read(requests, { linearizable: this.#server.config.linearizable });
      if (replies.length !== requests.length) throw new Error(`engine returned ${replies.length} replies for ${requests.length} requests`);
    } catch (err) {
      failure = err;
    }
    stop?.();
    metrics?.requestBatchSize.observe({ path: kind }, requests.length);
    const failed = replies === undefined ? respErrorFor(failure) : undefined;
    if (failed?.internal === true) this.#server.log.error({ err: failure, client: this.#id }, 'engine call failed');
    let r = 0;
    for (const p of batch) {
      if (p.kind === 'reply') {
        out.push(...p.out);
        this.#count(counts, p.name, p.error);
      } else if (failed !== undefined) {
        out.push(failed.line);
        this.#count(counts, p.name, failed.label);
      } else {
        const reply = replies![r++]!;
        pushReply(out, reply, (e) => errLine(e.code, e.message));
        this.#count(counts, p.name, reply.kind === 'error' ? reply.code : undefined);
      }
    }
  }

  #count(counts: Map<string, number>, name: string, error: string | undefined): void {
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (error !== undefined) this.#server.metrics?.requestErrors.inc({ command: name, error });
  }

  #recordCounts(counts: Map<string, number>): void {
    let total = 0;
    for (const [command, n] of counts) {
      this.#server.metrics?.requests.inc({ command }, n);
      total += n;
    }
    this.#server.countCommands(total);
    counts.clear();
  }

  /** Waits while the unsent output is over its bound: the client reads slower than it asks. */
  async #drained(): Promise<void> {
    const socket = this.#socket;
    if (socket.writableLength < this.#server.config.maxOutput || socket.destroyed) return;
    this.#pause();
    await new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
  }

  #flush(out: Buffer[]): void {
    if (out.length === 0) return;
    if (!this.#socket.destroyed) {
      this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    }
    out.length = 0;
  }

  #prepare(args: RespCommand): Prepared {
    const spec = lookupCommand(args[0]!);
    const name = spec?.name ?? 'unknown';
    const reply = (line: Buffer, error?: string): Prepared => ({ kind: 'reply', name, out: [line], error });
    if (spec === undefined) {
      return reply(this.#authenticated ? errLine('ErrBadRequest', unknownCommandMessage(args)) : NOAUTH, this.#authenticated ? 'unknown_command' : 'noauth');
    }
    if (!this.#authenticated && !spec.flags.includes('no_auth')) return reply(NOAUTH, 'noauth');
    if (!arityOk(spec, args.length)) return reply(errLine('ErrBadRequest', `wrong number of arguments for '${spec.name}' command`), 'arity');
    if (spec.kind === 'connection') return this.#connectionCommand(spec, args);
    try {
      let bytes = 0;
      for (const arg of args) bytes += arg.length;
      return { kind: spec.kind, name, request: spec.parse!(args), bytes };
    } catch (err) {
      const { line, label } = respErrorFor(err);
      return reply(line, label);
    }
  }

  #connectionCommand(spec: CommandSpec, args: RespCommand): Prepared {
    const out: Buffer[] = [];
    const done = (error?: string, after?: 'close'): Prepared => ({ kind: 'reply', name: spec.name, out, error, after });
    const sub = args[1]?.toString('latin1').toLowerCase();
    switch (spec.name) {
      case 'ping':
        if (args.length > 2) return this.#error(spec, out, `wrong number of arguments for 'ping' command`);
        out.push(args.length === 2 ? bulk(args[1]!) : encodeStatus('PONG'));
        return done();
      case 'echo':
        out.push(bulk(args[1]!));
        return done();
      case 'quit':
        out.push(OK);
        return done(undefined, 'close');
      case 'select':
        out.push(args[1]!.toString('latin1') === '0' ? OK : errLine('ErrBadRequest', 'DB index is out of range'));
        return done(out[0] === OK ? undefined : 'select');
      case 'auth': {
        if (args.length > 3) return this.#error(spec, out, 'syntax error');
        const result = this.#server.checkPassword(args.length === 3 ? args[1] : undefined, args.at(-1)!);
        return this.#authReply(result, out, done);
      }
      case 'hello':
        return this.#hello(args, out, done);
      case 'client':
        return this.#client(sub, args, out, done);
      case 'info':
        out.push(bulkText(this.#server.infoText(sub)));
        return done();
      case 'command':
        return this.#command(sub, args, out, done);
      case 'config':
        return this.#config(sub, args, out, done);
      default:
        throw new Error(`connection command ${spec.name} has no handler`);
    }
  }

  #error(spec: CommandSpec, out: Buffer[], detail: string): Prepared {
    out.push(errLine('ErrBadRequest', detail));
    return { kind: 'reply', name: spec.name, out, error: 'ErrBadRequest' };
  }

  #authReply(result: boolean | 'no-password', out: Buffer[], done: (error?: string) => Prepared): Prepared {
    if (result === 'no-password') {
      out.push(
        errLine(
          'ErrBadRequest',
          'AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
        ),
      );
      return done('auth');
    }
    if (!result) {
      this.#server.log.warn({ client: this.#id, remote: this.#socket.remoteAddress }, 'AUTH failed');
      out.push(WRONGPASS);
      return done('wrongpass');
    }
    this.#authenticated = true;
    out.push(OK);
    return done();
  }

  #hello(args: RespCommand, out: Buffer[], done: (error?: string) => Prepared): Prepared {
    let i = 1;
    if (args.length > 1) {
      const version = args[1]!.toString('latin1');
      if (version !== '2') {
        out.push(encodeError('NOPROTO', 'sealkv speaks RESP2 only'));
        return done('noproto');
      }
      i = 2;
    }
    for (; i < args.length; i++) {
      const option = args[i]!.toString('latin1').toUpperCase();
      if (option === 'AUTH' && i + 2 < args.length) {
        const result = this.#server.checkPassword(args[i + 1], args[i + 2]!);
        if (result !== true) {
          out.push(result === 'no-password' ? errLine('ErrBadRequest', 'AUTH <password> called without any password configured for the default user') : WRONGPASS);
          return done('wrongpass');
        }
        this.#authenticated = true;
        i += 2;
      } else if (option === 'SETNAME' && i + 1 < args.length) {
        this.#name = args[++i]!;
      } else {
        out.push(errLine('ErrBadRequest', `syntax error in HELLO option '${args[i]!.toString('latin1', 0, 64)}'`));
        return done('syntax');
      }
    }
    if (!this.#authenticated) {
      out.push(NOAUTH);
      return done('noauth');
    }
    const fields: [string, Buffer][] = [
      ['server', bulkText('sealkv')],
      ['version', bulkText(SERVER_VERSION)],
      ['proto', encodeInteger(2)],
      ['id', encodeInteger(this.#id)],
      ['mode', bulkText('standalone')],
      ['role', bulkText('master')],
    ];
    pushArrayHeader(out, fields.length * 2 + 2);
    for (const [k, v] of fields) out.push(bulkText(k), v);
    out.push(bulkText('modules'));
    pushArrayHeader(out, 0);
    return done();
  }

  #client(sub: string | undefined, args: RespCommand, out: Buffer[], done: (error?: string) => Prepared): Prepared {
    if (sub === 'setname' && args.length === 3) {
      if (/[\s]/.test(args[2]!.toString('latin1'))) {
        out.push(errLine('ErrBadRequest', 'Client names cannot contain spaces, newlines or special characters.'));
        return done('syntax');
      }
      this.#name = args[2]!.length === 0 ? null : args[2]!;
      out.push(OK);
    } else if (sub === 'getname' && args.length === 2) {
      pushBulk(out, this.#name);
    } else if (sub === 'id' && args.length === 2) {
      out.push(encodeInteger(this.#id));
    } else if (sub === 'setinfo' && args.length === 4) {
      out.push(OK);
    } else if (sub === 'info' && args.length === 2) {
      out.push(bulkText(`id=${this.#id} addr=${this.#socket.remoteAddress}:${this.#socket.remotePort} name=${this.#name?.toString('latin1') ?? ''} db=0\n`));
    } else {
      out.push(errLine('ErrBadRequest', `unknown subcommand or wrong number of arguments for '${args[1]!.toString('latin1', 0, 64)}'. Try CLIENT HELP.`));
      return done('syntax');
    }
    return done();
  }

  /** CONFIG GET for the few parameters tools ask about (redis-benchmark: save, appendonly); nothing is settable. */
  #config(sub: string | undefined, args: RespCommand, out: Buffer[], done: (error?: string) => Prepared): Prepared {
    if (sub !== 'get' || args.length < 3) {
      out.push(errLine('ErrBadRequest', `CONFIG ${args[1]!.toString('latin1', 0, 32).toUpperCase()} is not supported; only CONFIG GET is`));
      return done('syntax');
    }
    const { idleTimeoutMs, maxConnections } = this.#server.config;
    const params: [string, string][] = [
      ['save', ''],
      ['appendonly', 'no'],
      ['databases', '1'],
      ['maxclients', String(maxConnections)],
      ['timeout', String(Math.floor(idleTimeoutMs / 1000))],
    ];
    const matchers = args.slice(2).map((pattern) => globMatcher(Buffer.from(pattern.toString('latin1').toLowerCase(), 'latin1')));
    const found = params.filter(([name]) => matchers.some((m) => m(Buffer.from(name))));
    pushArrayHeader(out, found.length * 2);
    for (const [name, value] of found) out.push(bulkText(name), bulkText(value));
    return done();
  }

  #command(sub: string | undefined, args: RespCommand, out: Buffer[], done: (error?: string) => Prepared): Prepared {
    const describe = (spec: CommandSpec): void => {
      pushArrayHeader(out, 6);
      out.push(bulkText(spec.name), encodeInteger(spec.arity));
      pushArrayHeader(out, spec.flags.length);
      for (const flag of spec.flags) out.push(encodeStatus(flag));
      out.push(encodeInteger(spec.firstKey), encodeInteger(spec.lastKey), encodeInteger(spec.keyStep));
    };
    if (sub === undefined) {
      pushArrayHeader(out, COMMANDS.size);
      for (const spec of COMMANDS.values()) describe(spec);
    } else if (sub === 'count') {
      out.push(encodeInteger(COMMANDS.size));
    } else if (sub === 'info') {
      pushArrayHeader(out, args.length - 2);
      for (const name of args.slice(2)) {
        const spec = lookupCommand(name);
        if (spec === undefined) out.push(bulkNil());
        else describe(spec);
      }
    } else if (sub === 'docs') {
      pushArrayHeader(out, 0);
    } else {
      out.push(errLine('ErrBadRequest', `unknown subcommand '${args[1]!.toString('latin1', 0, 64)}'. Try COMMAND HELP.`));
      return done('syntax');
    }
    return done();
  }
}

function bulk(value: Buffer): Buffer {
  const parts: Buffer[] = [];
  pushBulk(parts, value);
  return Buffer.concat(parts);
}

function bulkText(text: string): Buffer {
  return bulk(Buffer.from(text));
}

function bulkNil(): Buffer {
  const parts: Buffer[] = [];
  pushBulk(parts, null);
  return parts[0]!;
}

