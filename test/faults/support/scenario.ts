// How a cluster fault scenario ends and is judged (SPEC §13): the faults
// stop and heal, traffic stops, the cluster must take more writes and every
// member must apply everything; then every acknowledged write must read back
// on every member, the client history must be linearizable, no member may
// have exited on its own, no client may have seen an integrity error, and
// (when asked) every member must report the same encryption state. Each
// finding is an anomaly; the scenario is recorded in the fault report with
// real counts, and the test fails on any anomaly.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ERROR_CODES, type ErrorCode } from '../../../src/errors/index.js';
import { encryptionStatus, sleep, type CliResult, type Traffic } from '../../support/encrypted-cluster.js';
import { checkKvHistory, describeKvHistory } from '../../support/linearizability.js';
import type { FaultCluster } from './fault-cluster.js';
import type { Nemesis } from './nemesis.js';
import { recordFault } from './report.js';

/** Bound on a catch-up after the faults (2 shared cores, nodes replaying after restarts). */
export const SETTLE_MS = 60_000;

/** Client errors that can only mean served damage or a broken keystore. */
const INTEGRITY_ERRORS = /ErrEncryptedReadIntegrity|ErrUnknownKeyId|ErrRaftUnwrapFailed|ErrEncryptionApply|ErrEnvelope|ErrSidecarCorrupt|ErrReservedEncryptionState/;

export interface ScenarioOutcome {
  faults: number;
  operations: number;
  /** One line per anomaly (empty when the scenario passed). */
  anomalies: string[];
}

export interface FinishOptions {
  /** Faults injected by the scenario itself, on top of the nemesis's. */
  extraFaults?: number;
  /** Anomalies the scenario found itself (e.g. an acknowledged write on an isolated leader). */
  extraAnomalies?: string[];
  /** Operations the scenario checked itself (e.g. read-backs of keys it wrote outside the traffic). */
  extraOperations?: number;
  /** Check that every member reports the same encryption phase and active DEKs. */
  encryption?: boolean;
}

/** Waits for `what` to settle (bounded); an anomaly line when it does not. */
async function attempt(what: string, run: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await run();
    return undefined;
  } catch (err) {
    return `${what}: ${String(err).slice(0, 500)}`;
  }
}

/** Ends and judges a scenario; records it with `recordFault` and returns the counts. */
export async function finishScenario(fc: FaultCluster, traffic: Traffic, nemesis: Nemesis | undefined, scenario: string, options: FinishOptions = {}): Promise<ScenarioOutcome> {
  const c = fc.cluster;
  const anomalies = [...(options.extraAnomalies ?? [])];
  await nemesis?.stop();
  fc.healAll();
  fc.resumeAll();
  anomalies.push(...(nemesis?.problems ?? []));
  for (const m of c.members) if (!m.process.running) anomalies.push(`${m.id} is not running:\n${m.process.output.slice(-1500)}`);

  await traffic.stop();
  const more = await attempt('writes after the faults healed', () => traffic.writeBatch(10));
  if (more !== undefined) anomalies.push(more);
  const settled = await attempt('catch-up after the faults healed', () => c.settle(SETTLE_MS));
  if (settled !== undefined) anomalies.push(settled);

  const acked = traffic.acked();
  let readBacks = 0;
  for (const m of c.running) {
    let missing = 0;
    let first = '';
    for (let i = 0; i < acked.length; i += 500) {
      const chunk = acked.slice(i, i + 500);
      const got = await c
        .client(m)
        .mget(...chunk.map((w) => w.key))
        .catch((err: unknown) => chunk.map(() => `(read failed: ${String(err)})`));
      chunk.forEach((w, j) => {
        readBacks++;
        if (got[j] === w.value) return;
        missing++;
        if (first === '') first = `${w.key} (${w.phase}) read ${JSON.stringify(got[j])?.slice(0, 60)}`;
      });
    }
    if (missing > 0) anomalies.push(`${m.id}: ${missing} of ${acked.length} acknowledged writes do not read back, e.g. ${first}`);
  }

  const verdict = checkKvHistory(traffic.history);
  if (verdict.result !== 'ok') anomalies.push(`history ${verdict.result} on key ${verdict.key}:\n${describeKvHistory(verdict.ops ?? [])}`);
  for (const e of traffic.errors) if (INTEGRITY_ERRORS.test(e)) anomalies.push(`client saw ${e}`);

  if (options.encryption === true) {
    const views: string[] = [];
    for (const m of c.running) {
      const s = await encryptionStatus(c, m).catch((err: unknown) => ({ error: String(err).slice(0, 200) }));
      views.push(`${m.id} ${JSON.stringify('error' in s ? s : { phase: s.phase, active: s.active, keys: [...s.keys_present].sort() })}`);
    }
    const same = new Set(views.map((v) => v.slice(v.indexOf(' ') + 1)));
    if (same.size > 1 || views.some((v) => v.includes('"error"'))) anomalies.push(`members disagree on the encryption state:\n${views.join('\n')}`);
  }

  const outcome: ScenarioOutcome = {
    faults: (nemesis?.faults ?? 0) + (options.extraFaults ?? 0),
    operations: traffic.history.length + readBacks + (options.extraOperations ?? 0),
    anomalies,
  };
  recordFault({ area: 'cluster', scenario, faults: outcome.faults, operations: outcome.operations, anomalies: anomalies.length });
  const links = fc.linkTotals();
  console.log(
    `cluster faults: "${scenario}": ${outcome.faults} faults (${JSON.stringify(nemesis?.counts ?? {})}), ` +
      `${traffic.history.length} client operations (${acked.length} acknowledged writes) checked, ${readBacks} read-backs, ${anomalies.length} anomalies; ` +
      `the links so far: ${links.connections} connections, ${links.cuts} cuts, ${links.forwarded} bytes forwarded, ${links.dropped} dropped, ${links.resets} streams reset`,
  );
  return outcome;
}

/** What a failed scenario leaves for its report: the faults it injected and every node's log, in a temp dir. */
export function keepLogs(fc: FaultCluster, nemesis: Nemesis | undefined, label: string): string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `sealkv-faults-${label}-`));
  for (const m of fc.cluster.members) fs.writeFileSync(path.join(out, `${m.id}.log`), m.process.output);
  fs.writeFileSync(path.join(out, 'faults.log'), (nemesis?.log ?? []).join('\n'));
  return out;
}

/** What a scenario test started, so that `endRun` can stop it whatever happened. */
export interface Run {
  fc?: FaultCluster;
  nemesis?: Nemesis;
  traffic?: Traffic;
}

/** Stops everything `run` started (for afterEach/afterAll); a failed test's logs are kept and their place printed. */
export async function endRun(run: Run, failed: boolean, label: string): Promise<void> {
  await run.nemesis?.stop().catch(() => undefined);
  await run.traffic?.stop().catch(() => undefined);
  if (run.fc !== undefined) {
    if (failed) console.log(`cluster faults: node logs and the fault schedule of the failed test in ${keepLogs(run.fc, run.nemesis, label)}`);
    await run.fc.destroy();
  }
  run.fc = undefined;
  run.nemesis = undefined;
  run.traffic = undefined;
}

/** The code of a failed CLI call (`sealkv: ErrXxx: ...` on stderr), if it names one. */
function failureCode(r: CliResult): string | undefined {
  return /sealkv: (Err\w+):/.exec(r.stderr)?.[1];
}

/**
 * An encryption verb under faults: sent to the leader of the moment (else
 * any running voter) and sent again, up to `ms`, while the answer is a
 * retryable SealError (no leader, a member unreachable for the capability
 * poll, a cutover in progress, a timeout) or the node asked cannot be
 * reached (killed, stopped). Any other failure is returned at once.
 */
export async function opUnderFaults(fc: FaultCluster, verb: string, extra: string[] = [], ms = 120_000): Promise<{ result: CliResult; attempts: number }> {
  const c = fc.cluster;
  const end = Date.now() + ms;
  for (let attempts = 1; ; attempts++) {
    const via = (await c.leader(3_000).catch(() => undefined)) ?? c.voters.find((m) => m.process.running && !fc.isPaused(m));
    const result = via === undefined ? { code: -1, stdout: '', stderr: 'no voter is running' } : await c.encryption(verb, via, true, extra);
    if (result.code === 0 || Date.now() > end) return { result, attempts };
    const code = failureCode(result);
    // The node asked may die before or while it answers: ask again (the verbs are safe to repeat).
    const unreachable = /cannot reach the admin API|no voter is running/.test(result.stderr);
    const retry = unreachable || (code !== undefined && ERROR_CODES[code as ErrorCode]?.retryable === true);
    if (!retry) return { result, attempts };
    await sleep(300);
  }
}
