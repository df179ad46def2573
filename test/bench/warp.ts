import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { cpuSeconds, startProxyProcess, startRelayProcess } from './proxy-process';
import type { ProxyProcess } from './proxy-process';
import { summarise } from './profile';
import { median, ratioSpread } from './figures';

// MinIO's own benchmark tool, warp, run back to back straight at MinIO and
// at the proxy (three shard buckets on the same MinIO, same client settings),
// each workload REPEATS times, alternating. Figures come from warp's record
// of every operation, over the window in which all of its threads were busy.

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const DURATION = process.env.BENCH_WARP_DURATION ?? '5s';
const MiB = 1024 * 1024;
const SETTLE_MS = 5_000;
const GiB = 1024 * MiB;

interface Workload {
  name: string;
  args: string[];
  /** The operations measured; the others (the set-up PUTs of a GET run) are not. */
  ops: string[];
  /** Leaves its objects in the bucket: deleting thousands of small objects
   * adds seconds to every run, while large ones left behind would fill the
   * disk. Each run has its own prefix, so what is left is never measured. */
  keep?: boolean;
  /** Also run through the bare relay (relay.ts), the floor of a Node proxy on
   * this machine: for the per-request path, where the proxy's own work shows. */
  relay?: boolean;
  /** Also run through the proxy with its default workers (one per core), for
   * the byte path, which one worker's single thread limits. */
  workers?: boolean;
}

const WORKLOADS: Workload[] = [
  { name: 'GET 4 KiB', args: ['get', '--obj.size', '4KiB', '--objects', '1000', '--concurrent', '20'], ops: ['GET'], keep: true, relay: true },
  { name: 'GET 1 MiB', args: ['get', '--obj.size', '1MiB', '--objects', '100', '--concurrent', '8'], ops: ['GET'], keep: true },
  { name: 'GET 64 MiB', args: ['get', '--obj.size', '64MiB', '--objects', '4', '--concurrent', '4'], ops: ['GET'], workers: true },
  { name: 'PUT 4 KiB', args: ['put', '--obj.size', '4KiB', '--concurrent', '20'], ops: ['PUT'], keep: true },
  { name: 'PUT 1 MiB', args: ['put', '--obj.size', '1MiB', '--concurrent', '8'], ops: ['PUT'] },
  // minio-go uploads an object this size in 16 MiB parts.
  { name: 'PUT 64 MiB', args: ['put', '--obj.size', '64MiB', '--concurrent', '4'], ops: ['PUT'] },
  { name: 'mixed 1 MiB', args: ['mixed', '--obj.size', '1MiB', '--objects', '200', '--concurrent', '8'], ops: ['GET', 'PUT', 'STAT', 'DELETE'] },
  { name: 'LIST 500 keys a page', args: ['list', '--obj.size', '1KiB', '--objects', '2000', '--max-keys', '1000', '--concurrent', '4'], ops: ['LIST'], keep: true },
  { name: 'multipart 5 MiB parts', args: ['multipart-put', '--parts', '10', '--part.size', '5MiB', '--part.concurrent', '4', '--concurrent', '2'], ops: ['PUTPART'] },
];

interface Op { thread: number; op: string; objects: number; bytes: number; start: number; end: number; ms: number; error: string }

export interface Figures {
  objPerSec: number;
  mibPerSec: number;
  p50: number;
  p99: number;
  /** Every byte warp moved (set-up included), for CPU per GiB. */
  totalBytes: number;
  totalOps: number;
}

function readOps(csvZst: string): Op[] {
  const text = execFileSync('zstd', ['-dc', csvZst], { maxBuffer: 1 << 30 }).toString('utf8');
  const [head, ...rows] = text.split('\n').filter((l) => l.trim() !== '');
  const col = Object.fromEntries(head.split('\t').map((name, i) => [name, i]));
  return rows.map((row) => {
    const f = row.split('\t');
    return {
      thread: Number(f[col.thread]), op: f[col.op], objects: Number(f[col.n_objects]), bytes: Number(f[col.bytes]) || 0,
      start: Date.parse(f[col.start]), end: Date.parse(f[col.end]), ms: Number(f[col.duration_ns]) / 1e6, error: f[col.error],
    };
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** Throughput over the window in which every thread was running the
 * measured operations, and latency of the operations inside it. */
export function figures(all: Op[], measured: string[]): Figures {
  const errors = all.filter((o) => o.error);
  if (errors.length) throw new Error(`${errors.length} operations failed; the first: ${errors[0].op} ${errors[0].error}`);
  const ops = all.filter((o) => measured.includes(o.op));
  if (ops.length === 0) throw new Error(`warp recorded no ${measured.join('/')} operation`);
  const threads = new Map<number, { first: number; last: number }>();
  for (const o of ops) {
    const t = threads.get(o.thread);
    if (!t) threads.set(o.thread, { first: o.start, last: o.end });
    else {
      t.first = Math.min(t.first, o.start);
      t.last = Math.max(t.last, o.end);
    }
  }
  const from = Math.max(...[...threads.values()].map((t) => t.first));
  const to = Math.min(...[...threads.values()].map((t) => t.last));
  const inside = ops.filter((o) => o.start >= from && o.end <= to);
  if (inside.length === 0 || to <= from) throw new Error('no operation ran while every thread was busy: the run is too short');
  const seconds = (to - from) / 1000;
  const latencies = inside.map((o) => o.ms).sort((a, b) => a - b);
  return {
    objPerSec: inside.reduce((n, o) => n + o.objects, 0) / seconds,
    mibPerSec: inside.reduce((n, o) => n + o.bytes, 0) / MiB / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    totalBytes: all.reduce((n, o) => n + o.bytes, 0),
    totalOps: all.length,
  };
}

function runWarp(warp: string, host: string, bucket: string, w: Workload, dir: string, name: string): Promise<Op[]> {
  const data = join(dir, name);
  const args = [...w.args, '--host', host, '--bucket', bucket, '--access-key', MINIO_USER, '--secret-key', MINIO_PASSWORD,
    '--duration', DURATION, '--full', '--no-color', '--benchdata', data, ...(w.keep ? ['--noclear'] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn(warp, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output = (output + d).slice(-4000); });
    child.stderr.on('data', (d) => { output = (output + d).slice(-4000); });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`warp ${w.args[0]} against ${host} exited ${code}: ${output}`));
      try {
        resolve(readOps(`${data}.csv.zst`));
      } catch (err) {
        reject(err);
      }
    });
  });
}

interface DirectRun extends Figures { minioCpuSeconds: number }
interface ProxyRun extends Figures { peakRss: number; cpuSeconds: number }

async function throughProxy(proxy: ProxyProcess, run: () => Promise<Op[]>, w: Workload): Promise<ProxyRun> {
  proxy.resetPeak();
  const cpu0 = proxy.cpuSeconds();
  const ops = await run();
  const cpuSeconds = proxy.cpuSeconds() - cpu0;
  return { ...figures(ops, w.ops), peakRss: proxy.peakRss(), cpuSeconds };
}

// A second proxy process, run under the V8 profiler, for each of these: the
// per-request path and the byte path.
const PROFILED = ['GET 4 KiB', 'GET 1 MiB'];

const fixed = (n: number, digits = 0) => n.toFixed(digits);
/** Each round's throughput as a percentage of the same round's direct run. */
const ofDirect = (runs: Figures[], direct: Figures[]) => runs.map((r, i) => r.objPerSec / direct[i].objPerSec * 100);
const cpuPerOp = (runs: ProxyRun[]) => median(runs.map((r) => r.cpuSeconds / r.totalOps * 1e6));
const cpuPerGiB = (runs: ProxyRun[]) => median(runs.map((r) => r.cpuSeconds / (r.totalBytes / GiB)));
const p50Added = (runs: Figures[], direct: Figures[]) => median(runs.map((r, i) => r.p50 - direct[i].p50));
const peakRss = (runs: ProxyRun[]) => Math.max(...runs.map((r) => r.peakRss));

export async function warpBench(print: (line: string) => void): Promise<void> {
  const warp = process.env.WARP_BIN;
  if (!warp) throw new Error('WARP_BIN is not set: `make bench` builds warp and sets it');
  const minio = await startMinio();
  const proxy = await startProxyProcess(minio.endpoint, ['warp-shard-1', 'warp-shard-2', 'warp-shard-3']);
  const relay = await startRelayProcess(minio.endpoint);
  const workers = availableParallelism();
  const multi = await startProxyProcess(minio.endpoint, ['warp-shard-1', 'warp-shard-2', 'warp-shard-3'], [], workers);
  const dir = mkdtempSync(join(tmpdir(), 'tss-warp-'));
  const host = (endpoint: string) => new URL(endpoint).host;
  const results = new Map<string, { direct: DirectRun[]; proxy: ProxyRun[]; relay: ProxyRun[]; multi: ProxyRun[] }>(
    WORKLOADS.map((w) => [w.name, { direct: [], proxy: [], relay: [], multi: [] }]));
  const idleRss: number[] = [];
  const profiles = new Map<string, string[]>();
  try {
    for (let round = 1; round <= REPEATS; round++) {
      for (const [i, w] of WORKLOADS.entries()) {
        const r = results.get(w.name)!;
        const minioCpu0 = cpuSeconds(minio.process.pid!);
        const direct = figures(await runWarp(warp, host(minio.endpoint), 'warp-direct', w, dir, `direct-${round}-${i}`), w.ops);
        r.direct.push({ ...direct, minioCpuSeconds: cpuSeconds(minio.process.pid!) - minioCpu0 });
        r.proxy.push(await throughProxy(proxy, () => runWarp(warp, host(proxy.endpoint), 'proxy-bucket', w, dir, `proxy-${round}-${i}`), w));
        if (w.relay) r.relay.push(await throughProxy(relay, () => runWarp(warp, host(relay.endpoint), 'warp-relay', w, dir, `relay-${round}-${i}`), w));
        if (w.workers) r.multi.push(await throughProxy(multi, () => runWarp(warp, host(multi.endpoint), 'proxy-bucket', w, dir, `workers-${round}-${i}`), w));
      }
      // Memory a round freed is handed back once the proxy has been idle a
      // little (V8's memory reducer); what stays after that would be a leak.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      idleRss.push(proxy.rss());
    }
    await proxy.stop();
    await relay.stop();
    await multi.stop();
    for (const name of PROFILED) {
      const w = WORKLOADS.find((x) => x.name === name)!;
      const profiled = await startProxyProcess(minio.endpoint, ['warp-shard-1', 'warp-shard-2', 'warp-shard-3'], ['--cpu-prof', `--cpu-prof-dir=${join(dir, name)}`]);
      await runWarp(warp, host(profiled.endpoint), 'proxy-bucket', w, dir, `profiled-${name}`).finally(() => profiled.stop());
      const [file] = readdirSync(join(dir, name));
      profiles.set(name, summarise(join(dir, name, file)));
    }
  } finally {
    await proxy.stop();
    await relay.stop();
    await multi.stop();
    await minio.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  print(`warp ${DURATION} runs, ${REPEATS} rounds, direct to MinIO vs through the proxy (3 shard buckets, 1 worker); medians, ratio as median [min..max] of the rounds`);
  print('');
  print('| workload | direct obj/s | direct MiB/s | direct p50 / p99 ms | proxy obj/s | proxy MiB/s | proxy p50 / p99 ms | proxy/direct | p50 added ms | proxy peak RSS MiB | proxy CPU s/GiB | proxy CPU µs/op | MinIO CPU µs/op (direct) |');
  print('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const w of WORKLOADS) {
    const { direct, proxy: via } = results.get(w.name)!;
    const m = (rs: Figures[], f: (x: Figures) => number) => median(rs.map(f));
    print(`| ${w.name} | ${fixed(m(direct, (x) => x.objPerSec))} | ${fixed(m(direct, (x) => x.mibPerSec), 1)} | ` +
      `${fixed(m(direct, (x) => x.p50), 1)} / ${fixed(m(direct, (x) => x.p99), 1)} | ` +
      `${fixed(m(via, (x) => x.objPerSec))} | ${fixed(m(via, (x) => x.mibPerSec), 1)} | ` +
      `${fixed(m(via, (x) => x.p50), 1)} / ${fixed(m(via, (x) => x.p99), 1)} | ` +
      `${ratioSpread(ofDirect(via, direct))} | ` +
      `${fixed(p50Added(via, direct), 2)} | ${fixed(peakRss(via) / MiB, 1)} | ` +
      `${w.args[0] === 'list' ? '-' : fixed(cpuPerGiB(via), 2)} | ${fixed(cpuPerOp(via))} | ` +
      `${fixed(median(direct.map((d) => d.minioCpuSeconds / d.totalOps * 1e6)))} |`);
  }
  for (const w of WORKLOADS.filter((x) => x.relay)) {
    const { direct, proxy: via, relay: bare } = results.get(w.name)!;
    print('');
    print(`${w.name} through the bare relay (test/bench/relay.ts: each request sent on as it came, bodies piped through undici), ` +
      `in the same rounds: ${fixed(median(bare.map((x) => x.objPerSec)))} obj/s, ` +
      `${ratioSpread(ofDirect(bare, direct))} of direct (the proxy ${ratioSpread(ofDirect(via, direct))}), ` +
      `p50 added ${fixed(p50Added(bare, direct), 2)} ms, ` +
      `CPU ${fixed(cpuPerOp(bare))} µs/op (the proxy ${fixed(cpuPerOp(via))})`);
  }
  for (const w of WORKLOADS.filter((x) => x.workers)) {
    const { direct, proxy: via, multi: runs } = results.get(w.name)!;
    print('');
    print(`${w.name} through the proxy with its default ${workers} workers (one per core), in the same rounds: ` +
      `${fixed(median(runs.map((x) => x.mibPerSec)), 1)} MiB/s, ${ratioSpread(ofDirect(runs, direct))} of direct ` +
      `(1 worker ${ratioSpread(ofDirect(via, direct))}), p50 added ${fixed(p50Added(runs, direct), 2)} ms, ` +
      `CPU ${fixed(cpuPerGiB(runs), 2)} s/GiB, peak RSS ${fixed(peakRss(runs) / MiB, 1)} MiB (primary and workers, each one's peak, summed)`);
  }
  print('');
  print(`proxy RSS ${SETTLE_MS / 1000} s after each round (leak check): ${idleRss.map((r) => `${fixed(r / MiB, 1)} MiB`).join(', ')}`);
  for (const [name, lines] of profiles) {
    print('');
    print(`Where the proxy's CPU time goes, ${name} (\`--cpu-prof\`, self time):`);
    print('```');
    for (const line of lines) print(line);
    print('```');
  }
}
