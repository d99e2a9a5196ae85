// The end-to-end load generator: pipelined RESP over several raw TCP
// connections, a closed loop per connection (send a window of `pipeline`
// commands, wait for all their replies, repeat) until a deadline. The
// command stream is fixed by the spec (mix, keys, values), so every target
// given the same spec gets the same data. Each command's latency is the time
// from its window's write to the arrival of its reply.
//
// The SET/GET mix is made of writer and reader connections (a fraction
// `setFraction` of the connections send SETs only, the others GETs only), as
// an application's writers and readers would. Interleaving SETs and GETs on
// one connection measures something else: a server must answer a
// connection's commands in order, so every SET→GET switch costs a Raft round
// trip before the GET may run.

import crypto from 'node:crypto';
import net from 'node:net';
import { encodeCommand } from '../../src/server/index.js';
import { LatencyHistogram } from './histogram.js';

export interface LoadSpec {
  /** Fraction of the connections that send SETs (the rest send GETs); 1 = writes only. */
  setFraction: number;
  valueBytes: number;
  /** Keys `bench:<n>` for n < keyspace; `fill` writes each once so every GET finds a value. */
  keyspace: number;
  connections: number;
  pipeline: number;
}

export interface LoadResult {
  seconds: number;
  sets: number;
  gets: number;
  errors: number;
  firstError: string | undefined;
  histogram: LatencyHistogram;
  /** CPU time of this (generator) process over the load, in seconds. */
  generatorCpuSeconds: number;
}

/** Distinct windows per connection, cycled: enough variety that keys spread over the keyspace. */
const WINDOWS_PER_CONNECTION = 64;
const VALUE_POOL = 256;
/** A window unanswered this long fails the run (a stuck node must not hang the benchmark). */
const WINDOW_TIMEOUT_MS = 30_000;

/** The random (incompressible) values of a run, the same for every target. */
export function valuePool(valueBytes: number): Buffer[] {
  return Array.from({ length: VALUE_POOL }, () => crypto.randomBytes(valueBytes));
}

/** Deterministic stand-in for a random choice: the same spec yields the same command stream. */
function mixHash(i: number): number {
  return (Math.imul(i + 1, 0x9e3779b1) >>> 0) / 2 ** 32;
}

/** Whether connection `c` is a writer: exactly round(connections × setFraction) of them are, spread out. */
export function isWriter(spec: LoadSpec, c: number): boolean {
  return Math.floor((c + 1) * spec.setFraction) > Math.floor(c * spec.setFraction);
}

/** Pre-encoded windows of connection `c`: SETs of values or GETs of keys spread over the keyspace. */
function connectionWindows(spec: LoadSpec, values: readonly Buffer[], c: number): Buffer[] {
  const set = isWriter(spec, c);
  return Array.from({ length: WINDOWS_PER_CONNECTION }, (_, w) => {
    const commands: Buffer[] = [];
    for (let j = 0; j < spec.pipeline; j++) {
      const i = (c * WINDOWS_PER_CONNECTION + w) * spec.pipeline + j;
      const key = `bench:${Math.floor(mixHash(i) * spec.keyspace)}`;
      commands.push(set ? encodeCommand(['SET', key, values[i % values.length]!]) : encodeCommand(['GET', key]));
    }
    return Buffer.concat(commands);
  });
}

/**
 * Counts complete RESP2 replies in a byte stream that arrives in chunks;
 * `onReply(isError, text)` per reply (text only for errors).
 */
class ReplyScanner {
  #rest: Buffer | null = null;
  constructor(private readonly onReply: (error: string | undefined) => void) {}

  push(chunk: Buffer): void {
    const buf = this.#rest === null ? chunk : Buffer.concat([this.#rest, chunk]);
    let pos = 0;
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) break;
      const type = buf[pos];
      if (type === 0x24 /* $ */) {
        const len = Number(buf.toString('latin1', pos + 1, eol));
        const end = len < 0 ? eol + 2 : eol + 2 + len + 2;
        if (end > buf.length) break;
        pos = end;
        this.onReply(undefined);
      } else {
        const line = buf.toString('latin1', pos + 1, eol);
        pos = eol + 2;
        this.onReply(type === 0x2d /* - */ ? line : undefined);
      }
    }
    this.#rest = pos < buf.length ? buf.subarray(pos) : null;
  }
}

async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** Writes every key of the keyspace once (SET, pipelined over `ports`), so GETs hit. */
export async function fill(ports: readonly number[], spec: LoadSpec, values: readonly Buffer[]): Promise<void> {
  const batch = 256;
  await Promise.all(
    ports.map(async (port, p) => {
      const socket = await connect(port);
      try {
        for (let start = p * batch; start < spec.keyspace; start += ports.length * batch) {
          const end = Math.min(spec.keyspace, start + batch);
          let left = end - start;
          let failure: string | undefined;
          const done = new Promise<void>((resolve) => {
            const scanner = new ReplyScanner((error) => {
              failure ??= error;
              if (--left === 0) resolve();
            });
            socket.on('data', (d: Buffer) => scanner.push(d));
          });
          const commands: Buffer[] = [];
          for (let n = start; n < end; n++) commands.push(encodeCommand(['SET', `bench:${n}`, values[n % values.length]!]));
          socket.write(Buffer.concat(commands));
          await done;
          socket.removeAllListeners('data');
          if (failure !== undefined) throw new Error(`fill: SET failed: ${failure}`);
        }
      } finally {
        socket.destroy();
      }
    }),
  );
}

/** Runs the spec's load for `ms` milliseconds (at least one window per connection), connection c on ports[c % ports.length]. */
export async function runLoad(ports: readonly number[], spec: LoadSpec, values: readonly Buffer[], ms: number): Promise<LoadResult> {
  const histogram = new LatencyHistogram();
  let sets = 0;
  let gets = 0;
  let errors = 0;
  let firstError: string | undefined;
  const sockets = await Promise.all(Array.from({ length: spec.connections }, (_, c) => connect(ports[c % ports.length]!)));
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const deadline = started + ms;
  try {
    await Promise.all(
      sockets.map(async (socket, c) => {
        const windows = connectionWindows(spec, values, c);
        const writer = isWriter(spec, c);
        let windowStart = 0;
        let left = 0;
        let wake: (() => void) | null = null;
        let fail: ((err: Error) => void) | null = null;
        socket.once('close', () => fail?.(new Error(`load: connection ${c} closed by the server`)));
        const scanner = new ReplyScanner((error) => {
          if (error !== undefined) {
            errors++;
            firstError ??= error;
          }
          left--;
        });
        socket.on('data', (d: Buffer) => {
          const before = left;
          scanner.push(d);
          const now = performance.now();
          for (let k = left; k < before; k++) histogram.record((now - windowStart) * 1000);
          if (left === 0 && wake !== null) wake();
        });
        for (let w = 0; w === 0 || performance.now() < deadline; w++) {
          left = spec.pipeline;
          let timer: NodeJS.Timeout | undefined;
          const done = new Promise<void>((resolve, reject) => {
            wake = resolve;
            fail = reject;
            timer = setTimeout(() => reject(new Error(`load: no reply in ${WINDOW_TIMEOUT_MS} ms on connection ${c}`)), WINDOW_TIMEOUT_MS);
          });
          windowStart = performance.now();
          socket.write(windows[w % windows.length]!);
          try {
            await done;
          } finally {
            clearTimeout(timer);
            wake = null;
            fail = null;
          }
          if (writer) sets += spec.pipeline;
          else gets += spec.pipeline;
        }
      }),
    );
  } finally {
    for (const socket of sockets) socket.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { seconds, sets, gets, errors, firstError, histogram, generatorCpuSeconds: (cpu.user + cpu.system) / 1e6 };
}
