// `sealkv backup create|verify|restore` (SPEC §12; src/backup/README.md).
//
//   create --admin=<host:port> --out=DIR      a running node writes a backup into DIR on its host
//   create --data-dir=D --out=DIR             a stopped node's data dir (takes its lock)
//   verify --in=DIR --kek-uri=URI|--kek-file=F
//   restore --in=DIR --data-dir=EMPTY --kek-uri=URI|--kek-file=F [--raft-id=ID]
//
// Output: `key: value` lines, or the JSON with --json. Exit 0 on success; 1
// with one stderr line `sealkv: <Code>: <message>` on any failure (verify
// also prints its report first, counts and failures); 2 on usage errors.

import path from 'node:path';
import { Command, type CommanderError } from 'commander';
import { createOfflineBackup, firstFailure, restoreBackup, verifyBackup } from '../backup/index.js';
import type { BackendName } from '../crypto/index.js';
import { kekConfigured, openKekProvider, type KekProvider } from '../kek/index.js';
import { CliFailure, callAdmin, fail, failOn, failure, requestOptions, summary } from './encryption.js';

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

interface CreateOptions {
  admin?: string;
  adminTokenFile?: string;
  dataDir?: string;
  raftId?: string;
  out: string;
  json?: boolean;
  timeout: string;
}

interface KekCliOptions {
  kekUri?: string;
  kekFile?: string;
  cryptoBackend?: string;
  json?: boolean;
}

interface VerifyCliOptions extends KekCliOptions {
  in: string;
}

interface RestoreCliOptions extends KekCliOptions {
  in: string;
  dataDir: string;
  raftId?: string;
}

export function backupCommand(): Command {
  const command = new Command('backup')
    .description('consistent backups of a node: create, verify with the KEK, restore into an empty data dir')
    .exitOverride((err: CommanderError) => process.exit(err.exitCode === 0 ? 0 : 2));
  command
    .command('create')
    .description('back up a running node (--admin: written by the node, on its host) or a stopped data dir (--data-dir)')
    .requiredOption('--out <dir>', 'new or empty directory for the backup')
    .option('--admin <host:port>', 'the running node\'s admin HTTP address')
    .option('--admin-token-file <path>', 'file holding the admin bearer token (or env SEALKV_ADMIN_TOKEN)')
    .option('--data-dir <path>', 'a stopped node\'s data directory (refused while a node holds it)')
    .option('--raft-id <id>', 'with --data-dir: the node\'s --raft-id, recorded in the backup')
    .option('--json', 'print the result as JSON')
    .option('--timeout <ms>', 'with --admin: how long to wait for the node', String(DEFAULT_TIMEOUT_MS))
    .action(async (options: CreateOptions) => {
      process.exitCode = await runCreate(options);
    });
  withKek(
    command
      .command('verify')
      .description('check every checksum, unwrap the DEKs with the KEK and open every encrypted value of a backup')
      .requiredOption('--in <dir>', 'the backup directory'),
  ).action(async (options: VerifyCliOptions) => {
    process.exitCode = await runVerify(options);
  });
  withKek(
    command
      .command('restore')
      .description('verify a backup, then write it into an empty data dir as a new single-node cluster under fresh DEKs')
      .requiredOption('--in <dir>', 'the backup directory')
      .requiredOption('--data-dir <path>', 'a new or empty data directory')
      .option('--raft-id <id>', 'the --raft-id the restored node will start with (default: the backup\'s)'),
  ).action(async (options: RestoreCliOptions) => {
    process.exitCode = await runRestore(options);
  });
  return command;
}

function withKek(command: Command): Command {
  return command
    .option('--kek-uri <uri>', 'the KEK (aws-kms://, file://, env://)')
    .option('--kek-file <path>', 'the KEK file (32 raw bytes)')
    .option('--crypto-backend <name>', 'aesni | batch | wasm | auto', 'auto')
    .option('--json', 'print the result as JSON');
}

async function runCreate(options: CreateOptions): Promise<number> {
  if ((options.admin === undefined) === (options.dataDir === undefined)) {
    return fail(failure('ErrBadRequest', 'give either --admin (a running node) or --data-dir (a stopped one)', 2));
  }
  try {
    let result: Record<string, unknown>;
    if (options.admin !== undefined) {
      const request = requestOptions({ admin: options.admin, adminTokenFile: options.adminTokenFile, timeout: options.timeout });
      // The node writes the files; a relative --out means the caller's directory, not the node's.
      result = await callAdmin(request, 'POST', `/backup?out=${encodeURIComponent(path.resolve(options.out))}`);
    } else {
      result = await createOfflineBackup(options.dataDir!, options.out, options.raftId ?? null);
    }
    print(result, options.json);
    return 0;
  } catch (err) {
    return failOn(err);
  }
}

async function runVerify(options: VerifyCliOptions): Promise<number> {
  return withProvider(options, undefined, async (kek) => {
    const report = await verifyBackup(options.in, { ...(kek === undefined ? {} : { kek }), backend: backendOf(options) });
    print(report, options.json);
    const failed = firstFailure(report);
    if (failed !== undefined) throw failed;
  });
}

async function runRestore(options: RestoreCliOptions): Promise<number> {
  return withProvider(options, options.dataDir, async (kek) => {
    const report = await restoreBackup({
      in: options.in,
      dataDir: options.dataDir,
      ...(kek === undefined ? {} : { kek }),
      ...(options.raftId === undefined ? {} : { raftId: options.raftId }),
      backend: backendOf(options),
    });
    print(report, options.json);
  });
}

/** Runs `work` with the KEK provider the options name (none when they name none), closed after. */
async function withProvider(options: KekCliOptions, dataDir: string | undefined, work: (kek: KekProvider | undefined) => Promise<void>): Promise<number> {
  let kek: KekProvider | undefined;
  try {
    const kekOptions = { ...(options.kekUri === undefined ? {} : { kekUri: options.kekUri }), ...(options.kekFile === undefined ? {} : { kekFile: options.kekFile }) };
    if (kekConfigured(kekOptions)) kek = openKekProvider({ ...kekOptions, ...(dataDir === undefined ? {} : { dataDir }) });
    await work(kek);
    return 0;
  } catch (err) {
    return failOn(err);
  } finally {
    kek?.close();
  }
}

function backendOf(options: KekCliOptions): BackendName {
  const name = options.cryptoBackend ?? 'auto';
  if (!['aesni', 'batch', 'wasm', 'auto'].includes(name)) throw new CliFailure('ErrBadRequest', `--crypto-backend: "${name}" is not one of aesni, batch, wasm, auto`, 2);
  return name as BackendName;
}

function print(result: object, json: boolean | undefined): void {
  process.stdout.write(json === true ? `${JSON.stringify(result, null, 2)}\n` : summary(result as Record<string, unknown>));
}
