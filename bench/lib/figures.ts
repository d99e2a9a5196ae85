// Reduces each suite's results to figures shown as ratios to a baseline of
// the same run, for the report of `bench all` (bench/lib/report.ts). The
// suites keep their own JSON shapes; this file knows the ones in
// bench/suites.ts, and for any other suite (one registered later) takes
// every number found under a `ratios` or `targets` field.

export interface Figure {
  /** What is measured, e.g. "set-1k phase2 throughput". */
  name: string;
  /** The measured figure as text (with its unit), when the suite gives one. */
  value?: string;
  /** What the ratio is taken against, in the same run. */
  baseline: string;
  ratio: number;
  /** Group for the chart (e.g. a workload); defaults to the suite. */
  group?: string;
  /** A figure of a different system, shown for orientation only. */
  reference?: boolean;
}

type Json = Record<string, unknown>;

const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);
const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

function e2eFigures(r: Json): Figure[] {
  const out: Figure[] = [];
  for (const row of (r.rows as Json[] | undefined) ?? []) {
    const target = String(row.target);
    if (target === 'cleartext') continue;
    const group = String(row.workload);
    const reference = row.reference === true;
    const baseline = 'sealkv cleartext cluster';
    const t = num(row.throughputVsCleartext);
    const p99 = num(row.p99VsCleartext);
    const cpu = num(row.cpuPerWriteVsCleartext);
    if (t !== undefined) out.push({ group, name: `${target} throughput`, value: `${row.opsPerSec} ops/s`, baseline, ratio: t, reference });
    if (p99 !== undefined) out.push({ group, name: `${target} p99`, value: `${row.p99ms} ms`, baseline, ratio: p99, reference });
    if (cpu !== undefined) out.push({ group, name: `${target} CPU per write`, value: `${row.cpuUsPerWrite} µs`, baseline, ratio: cpu, reference });
  }
  return out;
}

function cryptoFigures(r: Json): Figure[] {
  const targets = isObject(r.targets) ? r.targets : {};
  return Object.entries(targets).flatMap(([name, t]) => {
    if (!isObject(t) || num(t.ratio) === undefined) return [];
    const [, baseline = 'see name'] = name.split(' / ');
    return [{ name, value: typeof t.figures === 'string' ? t.figures : undefined, baseline, ratio: num(t.ratio)! }];
  });
}

function cryptoTargetsFigures(r: Json): Figure[] {
  const median = isObject(r.median) ? r.median : {};
  return Object.entries(median).flatMap(([name, v]) => {
    const m = /^(\w+?)Over(\w+?)(\d+k?)$/.exec(name);
    if (m === null || num(v) === undefined) return [];
    return [{ name: `${m[1]} ${m[3]}`, baseline: `${m[2]} ${m[3]}`, ratio: num(v)! }];
  });
}

function kekFigures(r: unknown): Figure[] {
  return ((Array.isArray(r) ? r : []) as Json[]).flatMap((row) =>
    row.provider === 'file://' ? [] : [
      { name: `${row.provider} unwrap p50`, value: `${row.p50Ms} ms`, baseline: 'file:// provider', ratio: num(row.p50VsFile) ?? NaN },
      { name: `${row.provider} unwrap p99`, value: `${row.p99Ms} ms`, baseline: 'file:// provider', ratio: num(row.p99VsFile) ?? NaN },
    ],
  );
}

function raftFigures(r: Json): Figure[] {
  const rows = (r.rows as Json[] | undefined) ?? [];
  const out: Figure[] = [];
  for (const payload of [...new Set(rows.map((x) => x.payload))]) {
    const of = rows.filter((x) => x.payload === payload);
    const one = of.find((x) => x.batch === 1);
    const most = of.reduce<Json | undefined>((a, x) => (a === undefined || Number(x.batch) > Number(a.batch) ? x : a), undefined);
    if (one !== undefined && most !== undefined && most !== one) {
      out.push({ group: `${payload} B`, name: `batch ${most.batch} proposals/s`, value: `${most.proposalsPerSec}/s`, baseline: 'batch 1', ratio: round(Number(most.proposalsPerSec) / Number(one.proposalsPerSec), 2) });
    }
    if (one !== undefined && num(one.p50VsFsyncP50) !== undefined) {
      out.push({ group: `${payload} B`, name: 'batch 1 commit p50', value: `${one.p50ms} ms`, baseline: 'one fdatasync p50', ratio: num(one.p50VsFsyncP50)! });
    }
  }
  return out;
}

function storeFigures(r: unknown): Figure[] {
  return ((Array.isArray(r) ? r : []) as Json[]).flatMap((row) => {
    const ratios = isObject(row.ratios) ? row.ratios : {};
    const group = `${row.size} B ${row.kind}`;
    return Object.entries(ratios).flatMap(([name, v]) => (num(v) === undefined ? [] : [{ group, name: `encrypted ${name}`, baseline: 'cleartext store', ratio: num(v)! }]));
  });
}

/** "phase1VsCleartext" → "cleartext"; a name without Over/Vs names its own baseline. */
function baselineOf(name: string): string {
  const m = /(?:Over|Vs)([A-Z]\w*)$/.exec(name);
  return m === null ? 'see name' : m[1]!.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

/** Any suite: numbers under `ratios` (an object, or rows with labels) and `targets.*.ratio`. */
export function genericFigures(r: unknown): Figure[] {
  if (!isObject(r)) return [];
  const out: Figure[] = [];
  const ratios = r.ratios;
  if (isObject(ratios)) {
    for (const [name, v] of Object.entries(ratios)) if (num(v) !== undefined) out.push({ name, baseline: baselineOf(name), ratio: num(v)! });
  } else if (Array.isArray(ratios)) {
    for (const row of ratios as Json[]) {
      const label = Object.values(row).filter((v) => typeof v === 'string').join(' ');
      for (const [name, v] of Object.entries(row)) {
        if (num(v) !== undefined && /over|vs|ratio/i.test(name)) out.push({ group: label, name: `${label} ${name}`, baseline: baselineOf(name), ratio: num(v)! });
      }
    }
  }
  if (isObject(r.targets)) out.push(...cryptoFigures(r));
  return out;
}

const EXTRACTORS: Record<string, (r: never) => Figure[]> = {
  e2e: e2eFigures,
  crypto: cryptoFigures,
  'crypto-targets': cryptoTargetsFigures,
  kek: kekFigures,
  raft: raftFigures,
  store: storeFigures,
};

export function figuresOf(suite: string, results: unknown): Figure[] {
  const extract = EXTRACTORS[suite] ?? genericFigures;
  try {
    return (extract as (r: unknown) => Figure[])(results).filter((f) => Number.isFinite(f.ratio));
  } catch {
    return [];
  }
}
