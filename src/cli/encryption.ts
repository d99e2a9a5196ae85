// `sealkv encryption <verb>` (SPEC §12): the operator's side of the rollout,
// over a node's admin API (`/encryption/...`, bearer token).
//
// Output: the JSON result with `--json`, else one `key: value` line per field
// (nested fields dotted). Exit 0 on success; 1 with one stderr line
// `sealkv: <Code>: <message>` when the node refuses or cannot be asked; 2 for
// usage errors (bad options, no admin token). `disable` needs no node: it
// always refuses with the dump-and-reload explanation. `resync-sidecar` runs
// offline on a stopped node's data dir (resync-sidecar.ts); it asks a
// running node's admin API only with --admin. `rewrite` starts the sweep on
// every member and follows it (rewrite-online.ts); `rewrite --offline` runs
// the sweep on a stopped node's data dir (rewrite.ts).

import http from 'node:http';
import { Command, type CommanderError } from 'commander';
import { isSealError, type ErrorCode } from '../errors/index.js';
import { DEFAULT_ADMIN_LISTEN, parseHostPort, type HostPort } from '../node/index.js';
import { ENCRYPTION_DISABLE_EXPLANATION, loadSecret } from '../server/index.js';
import { resyncSidecar, type ResyncReport } from './resync-sidecar.js';
import { runOnlineRewrite } from './rewrite-online.js';
import { RewriteUsageError, runOfflineRewrite, type RewriteCliOptions } from './rewrite.js';

export interface EncryptionCliOptions {
  admin: string;
  adminTokenFile?: string;
  json?: boolean;
  timeout: string;
  verify?: boolean;
  purpose?: string;
  kekUri?: string;
  keyId?: string;
}

interface Verb {
  name: string;
  description: string;
  method: 'GET' | 'POST';
}

const VERBS: readonly Verb[] = [
  { name: 'status', description: 'this node\'s encryption status: active key_ids, phases, cutover index, epochs (--verify counts versions per key_id)', method: 'GET' },
  { name: 'bootstrap', description: 'generate the storage and raft DEKs on the leader, wrapped with the KEK, and register every member as a writer', method: 'POST' },
  { name: 'enable-storage-envelope', description: 'Phase 1: bootstrap if needed, then seal every new value at apply from the flag entry on', method: 'POST' },
  { name: 'enable-raft-envelope', description: 'Phase 2: wrap every Raft payload after the cutover entry (one-way)', method: 'POST' },
  { name: 'rotate-dek', description: 'a new DEK of --purpose, active for new seals on every node from its entry on; older DEKs stay for reading', method: 'POST' },
  { name: 'rewrap-deks', description: 'wrap every unretired DEK again, under --kek-uri (KEK rotation) or the leader\'s KEK (repair); key bytes unchanged', method: 'POST' },
  {
    name: 'retire-dek',
    description: 'drop DEK --key-id from every node, once no member can need it (SPEC §4.2; no override): refused with the reason and per-node facts otherwise',
    method: 'POST',
  },
];

const DEFAULT_TIMEOUT_MS = 60_000;
/** The longest delay a timer takes (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Why a verb failed: a code (from this CLI, or as the node sent it — a newer
 * node may know codes this CLI does not) and the exit status, 2 for usage.
 */
export class CliFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export function failure(code: ErrorCode, message: string, exitCode: 1 | 2 = 1): CliFailure {
  return new CliFailure(code, message, exitCode);
}

/** The `encryption` command with its verbs, for the program in main.ts. */
export function encryptionCommand(): Command {
  const command = new Command('encryption')
    .description('drive and inspect the encryption rollout through a node\'s admin API')
    // Set before the verbs are added so that they inherit it: usage errors exit 2.
    .exitOverride((err: CommanderError) => process.exit(err.exitCode === 0 ? 0 : 2));
  for (const verb of VERBS) {
    const sub = withCommonOptions(command.command(verb.name).description(verb.description));
    if (verb.name === 'status') sub.option('--verify', 'count versions per key_id by scanning the store (slow on a large store)');
    if (verb.name === 'rotate-dek') sub.requiredOption('--purpose <storage|raft>', 'which DEK to rotate');
    if (verb.name === 'rewrap-deks') sub.option('--kek-uri <uri>', 'the KEK to wrap under (aws-kms://..., file://...); default: the leader\'s current KEK');
    if (verb.name === 'retire-dek') sub.requiredOption('--key-id <N>', 'the key_id of the DEK to retire (see `encryption status`)');
    sub.action(async (options: EncryptionCliOptions) => {
      process.exitCode = await runVerb(verb, options);
    });
  }
  command
    .command('resync-sidecar')
    .description('OFFLINE, on a stopped node: replay the Raft log into its keys.json (after ErrSidecarBehindRaftLog); with --admin, from the leader when the log was compacted past it, and local epochs raised (after ErrLocalEpochRollback)')
    .requiredOption('--data-dir <path>', 'the stopped node\'s data directory')
    .requiredOption('--raft-id <id>', 'the node\'s --raft-id')
    .option('--kek-uri <uri>', 'the node\'s KEK (aws-kms://, file://, env://)')
    .option('--kek-file <path>', 'the node\'s KEK file (32 raw bytes)')
    .option('--admin <host:port>', 'a running node\'s admin HTTP address: fetch GetSidecarState from the leader through it')
    .option('--admin-token-file <path>', 'file holding the admin bearer token (or env SEALKV_ADMIN_TOKEN)')
    .option('--json', 'print what changed as JSON')
    .option('--timeout <ms>', 'how long to wait for the admin API\'s answer', String(DEFAULT_TIMEOUT_MS))
    .action(async (options: ResyncCliOptions) => {
      process.exitCode = await runResync(options);
    });
  withCommonOptions(command.command('rewrite'))
    .description('re-seal every stored version under --key-id (or cleartext ones) with the active storage DEK: on every member through its own sweep, following each member\'s progress until all are done; --offline on a stopped node\'s data dir')
    .option('--key-id <n>', 'the old storage key_id whose versions to re-seal (after rotate-dek, before retire-dek)')
    .option('--cleartext', 'seal the versions written before Phase 1 (cleartext bodies)')
    .option('--rate <MiB/s>', 'value bytes re-sealed per second at most, on each member (default: no limit)')
    .option('--no-wait', 'online: start the sweeps and return (run the same command again to follow them)')
    .option('--interval <ms>', 'online: how often to poll every member\'s progress', '1000')
    .option('--offline', 'run on a STOPPED node: takes its data dir\'s lock (refused while the node runs)')
    .option('--data-dir <path>', 'with --offline: the stopped node\'s data directory')
    .option('--raft-id <id>', 'with --offline: the node\'s --raft-id')
    .option('--kek-uri <uri>', 'with --offline: the node\'s KEK (aws-kms://, file://, env://)')
    .option('--kek-file <path>', 'with --offline: the node\'s KEK file (32 raw bytes)')
    .option('--workers <n>', 'with --offline: crypto worker threads (0 = seal on the main thread; default min(2, cores))')
    .option('--crypto-backend <name>', 'with --offline: aesni | batch | wasm | auto')
    .option('--compression <on|off>', 'with --offline: Snappy before sealing cleartext bodies (default on)')
    .action(async (options: RewriteCliOptions & OnlineRewriteCliOptions) => {
      process.exitCode = options.offline === true ? await runRewrite(options) : await runOnline(options);
    });
  withCommonOptions(command.command('disable').description('refused: encryption is one-way (prints the dump-and-reload way out)')).action(() => {
    process.exitCode = fail(failure('ErrEncryptionDisableUnsupported', ENCRYPTION_DISABLE_EXPLANATION));
  });
  return command;
}

function withCommonOptions(command: Command): Command {
  return command
    .option('--admin <host:port>', 'the node\'s admin HTTP address', DEFAULT_ADMIN_LISTEN)
    .option('--admin-token-file <path>', 'file holding the admin bearer token (or env SEALKV_ADMIN_TOKEN)')
    .option('--json', 'print the raw JSON result')
    .option('--timeout <ms>', 'how long to wait for the node\'s answer', String(DEFAULT_TIMEOUT_MS));
}

async function runVerb(verb: Verb, options: EncryptionCliOptions): Promise<number> {
  const params = new URLSearchParams();
  if (verb.name === 'status' && options.verify === true) params.set('verify', '1');
  if (options.purpose !== undefined) params.set('purpose', options.purpose);
  if (options.kekUri !== undefined) params.set('kek_uri', options.kekUri);
  if (options.keyId !== undefined) {
    if (!/^[1-9]\d{0,9}$/.test(options.keyId) || Number(options.keyId) > 0xffffffff) return fail(failure('ErrBadRequest', `--key-id: "${options.keyId}" is not a key_id (uint32, not 0)`, 2));
    params.set('key_id', options.keyId);
  }
  const query = params.size === 0 ? '' : `?${params.toString()}`;
  try {
    const result = await callAdmin(requestOptions(options), verb.method, `/encryption/${verb.name}${query}`);
    process.stdout.write(options.json === true ? `${JSON.stringify(result, null, 2)}\n` : summary(result));
    return 0;
  } catch (err) {
    if (err instanceof CliFailure) return fail(err);
    throw err;
  }
}

interface OnlineRewriteCliOptions extends EncryptionCliOptions {
  cleartext?: boolean;
  rate?: string;
  wait: boolean;
  interval: string;
}

/** The flags that only mean something offline. */
const OFFLINE_ONLY = ['dataDir', 'raftId', 'kekFile', 'workers', 'cryptoBackend', 'compression'] as const;

/** `rewrite` without --offline: the fan-out through the admin API, followed to the end (rewrite-online.ts). */
async function runOnline(options: OnlineRewriteCliOptions & RewriteCliOptions): Promise<number> {
  try {
    const offlineOnly = OFFLINE_ONLY.filter((k) => options[k] !== undefined);
    if (offlineOnly.length > 0 || options.kekUri !== undefined) throw failure('ErrBadRequest', `these options need --offline: --${[...offlineOnly, ...(options.kekUri === undefined ? [] : ['kekUri'])].map(kebab).join(', --')}`, 2);
    if ((options.keyId === undefined) === (options.cleartext !== true)) throw failure('ErrBadRequest', 'give exactly one of --key-id=<N> or --cleartext', 2);
    if (options.keyId !== undefined && (!/^[1-9]\d{0,9}$/.test(options.keyId) || Number(options.keyId) > 0xffffffff)) {
      throw failure('ErrBadRequest', `--key-id: "${options.keyId}" is not a key_id (uint32, not 0)`, 2);
    }
    const rate = options.rate === undefined ? null : Number(options.rate);
    if (rate !== null && !(Number.isFinite(rate) && rate > 0)) throw failure('ErrBadRequest', `--rate: "${options.rate}" is not a positive number of MiB/s`, 2);
    if (!/^\d+$/.test(options.interval) || Number(options.interval) < 50) throw failure('ErrBadRequest', `--interval: "${options.interval}" is not a number of milliseconds (50 or more)`, 2);
    const request = requestOptions(options);
    return await runOnlineRewrite(
      { target: options.keyId ?? 'cleartext', rate, wait: options.wait, json: options.json === true, intervalMs: Number(options.interval) },
      (method, path) => callAdmin(request, method, path),
      process.stdout,
    );
  } catch (err) {
    if (err instanceof CliFailure) return fail(err);
    throw err;
  }
}

interface ResyncCliOptions {
  dataDir: string;
  raftId: string;
  kekUri?: string;
  kekFile?: string;
  admin?: string;
  adminTokenFile?: string;
  json?: boolean;
  timeout: string;
}

async function runResync(options: ResyncCliOptions): Promise<number> {
  try {
    let fetchLeaderState: (() => Promise<unknown>) | undefined;
    if (options.admin !== undefined) {
      const request = requestOptions({ ...options, admin: options.admin });
      fetchLeaderState = () => callAdmin(request, 'GET', `/encryption/sidecar-state?node=${encodeURIComponent(options.raftId)}`);
    }
    const report = await resyncSidecar({
      dataDir: options.dataDir,
      raftId: options.raftId,
      ...(options.kekUri === undefined ? {} : { kekUri: options.kekUri }),
      ...(options.kekFile === undefined ? {} : { kekFile: options.kekFile }),
      ...(fetchLeaderState === undefined ? {} : { fetchLeaderState }),
    });
    process.stdout.write(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : resyncSummary(report));
    return 0;
  } catch (err) {
    return failOn(err);
  }
}

async function runRewrite(options: RewriteCliOptions): Promise<number> {
  try {
    const result = await runOfflineRewrite(options);
    return result.done ? 0 : fail(new CliFailure('ErrRewriteInterrupted', `stopped at ${result.target} after ${result.scanned} versions; the cursor is kept: run the same command to resume`));
  } catch (err) {
    if (err instanceof RewriteUsageError || err instanceof RangeError) return fail(failure('ErrBadRequest', err.message, 2));
    return failOn(err);
  }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Any failure of a local (offline) command as its one stderr line (typed errors keep their code, system errors their errno code); the exit status. */
export function failOn(err: unknown): number {
  if (err instanceof CliFailure) return fail(err);
  if (isSealError(err)) return fail(new CliFailure(err.code, err.message));
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return fail(new CliFailure(typeof code === 'string' ? code : 'Error', err instanceof Error ? err.message : String(err)));
}

/** What resync-sidecar changed, one fact per line (key_ids and epochs only). */
function resyncSummary(r: ResyncReport): string {
  const lines = [
    r.written ? `keys.json rewritten (${r.source}; ${r.entries_replayed} encryption entries replayed, ${r.raft_envelopes_opened} raft envelopes opened)` : `keys.json already current (${r.source}); nothing written`,
    `raft_applied_index: ${r.raft_applied_index.from} -> ${r.raft_applied_index.to}`,
  ];
  if (r.keys_added.length > 0) lines.push(`keys added: ${r.keys_added.join(', ')}`);
  if (r.keys_retired.length > 0) lines.push(`keys retired: ${r.keys_retired.join(', ')}`);
  if (r.keys_rewrapped.length > 0) lines.push(`keys rewrapped: ${r.keys_rewrapped.join(', ')}`);
  for (const e of r.epochs_raised) lines.push(`local_epoch of ${e.key_id}: ${e.from ?? 'new'} -> ${e.to}`);
  if (r.active !== null) lines.push(`active: ${JSON.stringify(r.active.from)} -> ${JSON.stringify(r.active.to)}`);
  if (r.storage_envelope_active !== null) lines.push(`storage_envelope_active: ${r.storage_envelope_active.from} -> ${r.storage_envelope_active.to}`);
  if (r.raft_envelope_cutover_index !== null) lines.push(`raft_envelope_cutover_index: ${r.raft_envelope_cutover_index.from ?? 'none'} -> ${r.raft_envelope_cutover_index.to ?? 'none'}`);
  return lines.map((line) => `${line}\n`).join('');
}

/** The address, token and timeout from the options; a usage failure (exit 2) when they do not make a request. */
export function requestOptions(options: Pick<EncryptionCliOptions, 'admin' | 'adminTokenFile' | 'timeout'>): AdminRequest {
  let address: HostPort;
  let token: string | undefined;
  try {
    address = parseHostPort(options.admin, '--admin');
    token = loadSecret({ file: options.adminTokenFile, env: 'SEALKV_ADMIN_TOKEN' }, 'admin token');
  } catch (err) {
    if (err instanceof RangeError || isSealError(err, 'ErrBadRequest')) throw failure('ErrBadRequest', err.message, 2);
    throw err;
  }
  if (token === undefined) throw failure('ErrBadRequest', 'no admin token: give --admin-token-file <path> or set SEALKV_ADMIN_TOKEN', 2);
  if (!/^\d+$/.test(options.timeout) || Number(options.timeout) <= 0 || Number(options.timeout) > MAX_TIMEOUT_MS) {
    throw failure('ErrBadRequest', `--timeout: "${options.timeout}" is not a number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`, 2);
  }
  return { address, token, timeoutMs: Number(options.timeout) };
}

export interface AdminRequest {
  address: HostPort;
  token: string;
  timeoutMs: number;
}

/** One admin API call; the JSON object on 2xx, else a CliFailure saying why. */
export async function callAdmin(request: AdminRequest, method: 'GET' | 'POST', path: string): Promise<Record<string, unknown>> {
  const { host, port } = request.address;
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const { status, text } = await exchange(request, method, path, where);
  const body = parseObject(text);
  if (status >= 200 && status < 300 && body !== undefined) return body;
  const message = typeof body?.error === 'string' ? body.error : text.slice(0, 200);
  if (typeof body?.code === 'string') throw new CliFailure(body.code, message);
  if (status === 401) throw failure('ErrAdminRequest', `the admin API at ${where} refused the token (HTTP 401)`);
  if (status === 404) throw failure('ErrAdminRequest', `the node at ${where} has no encryption admin routes (HTTP 404: ${message})`);
  throw failure('ErrAdminRequest', `the admin API at ${where} answered HTTP ${status}: ${message}`);
}

/**
 * The HTTP round trip on its own connection (no keep-alive, so the process
 * exits as soon as the answer is in), bounded by `timeoutMs` as a whole.
 */
function exchange(request: AdminRequest, method: string, path: string, where: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: request.address.host, port: request.address.port, method, path, agent: false, headers: { authorization: `Bearer ${request.token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', () => undefined); // the request's 'error' reports it
      },
    );
    const timer = setTimeout(() => {
      req.destroy(
        failure('ErrTimeout', `no answer from the admin API at ${where} within ${request.timeoutMs} ms (an operation may still complete: check \`sealkv encryption status\`)`),
      );
    }, request.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err instanceof CliFailure ? err : failure('ErrAdminRequest', `cannot reach the admin API at ${where}: ${err.code ?? err.message}`));
    });
    req.end();
  });
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `key: value` lines, nested objects dotted, arrays of scalars joined. */
export function summary(result: Record<string, unknown>): string {
  const lines: string[] = [];
  const walk = (value: unknown, key: string): void => {
    if (Array.isArray(value) && value.every((v) => v === null || typeof v !== 'object')) {
      lines.push(`${key}: ${value.map(String).join(', ')}`);
    } else if (typeof value === 'object' && value !== null) {
      const entries = Object.entries(value);
      if (entries.length === 0) lines.push(`${key}: {}`);
      for (const [k, v] of entries) walk(v, key === '' ? k : `${key}.${k}`);
    } else {
      lines.push(`${key}: ${String(value)}`);
    }
  };
  for (const [k, v] of Object.entries(result)) walk(v, k);
  return lines.map((line) => `${line}\n`).join('');
}

/** Writes the one failure line on stderr; the exit status. */
export function fail(err: CliFailure): number {
  process.stderr.write(`sealkv: ${err.code}: ${oneLine(detail(err.code, err.message))}\n`);
  return err.exitCode;
}

/** A message without the `Code: ` prefix SealError puts on it. */
function detail(code: string, message: string): string {
  return message.startsWith(`${code}: `) ? message.slice(code.length + 2) : message;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}
