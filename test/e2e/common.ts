import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { S3Client, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { MINIO_PASSWORD, MINIO_USER, freePort, startMinio } from '../helpers/minio';
import type { Minio } from '../helpers/minio';
import { run } from '../helpers/run';
import type { RunResult } from '../helpers/run';

// What the Tempo and Loki end-to-end runs share: a Grafana program built from
// source, storing through the proxy (a child process, as deployed) into three
// shard buckets on MinIO, with every S3 call it makes written down on the way.

export const ROOT = resolve(__dirname, '..', '..');
export const SHARDS = ['shard1', 'shard2', 'shard3'];

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Key { accessKeyId: string; secretAccessKey: string }

// ---- processes: every child is killed at the end, also when tap gives up on us

const children = new Set<ChildProcess>();
function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.once('exit', killAll);
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => { killAll(); process.exit(1); });
}

function spawnLogged(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves to the exit code or signal. */
async function stopChild(child: ChildProcess, graceMs: number): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode;
  const exited = new Promise<number | string | null>((r) => child.once('exit', (code, sig) => r(code ?? sig)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const status = await exited;
  clearTimeout(timer);
  return status;
}

export function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}
const tail = (file: string, lines = 40) => readLines(file).slice(-lines).join('\n');

async function waitHttp(url: string, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${url}: the process exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile)}`);
    }
    try {
      const r = await fetch(url);
      last = `${r.status} ${(await r.text()).slice(0, 200)}`;
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(250);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (last answer ${last}):\n${tail(logFile)}`);
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(1000);
  }
}

/** Runs the `build-*.sh` script next to this file and returns the binary it
 * prints last, with the first line of its `-version`. */
export async function buildProgram(script: string): Promise<{ bin: string; version: string }> {
  const build = await run('bash', [join(__dirname, script)], { timeoutMs: 3_600_000 });
  if (build.status !== 0) throw new Error(`${script} failed:\n${build.stderr}`);
  const bin = build.stdout.trim().split('\n').pop()!;
  const version = await run(bin, ['-version']);
  return { bin, version: version.stdout.split('\n')[0] };
}

/** `tempo-s3-shard locate`: a line `<key>\t<bucket>` per key. */
export function locate(proxyConfig: string, keys: string[]): Promise<RunResult> {
  return run(process.execPath, [join(ROOT, 'bin', 'tempo-s3-shard'), 'locate', '--config', proxyConfig, ...keys]);
}

// ---- a pass-through between the program and the proxy that writes down every
// S3 call with the request headers that shape it, so the call mix can be told
// and a wrong answer shown with the request that got it

const NOTED_HEADERS = /^(range|if-match|if-none-match|if-modified-since|expect|content-encoding|transfer-encoding|content-md5|x-amz-trailer|x-amz-decoded-content-length|x-amz-sdk-checksum-algorithm|x-amz-checksum-.*|x-amz-storage-class|x-amz-tagging|x-amz-meta-.*)$/;

export interface Exchange { method: string; url: string; status: number; headers: Record<string, string>; body?: string }

function startRecorder(target: number, logFile: string): Promise<{ server: Server; port: number; exchanges: Exchange[] }> {
  const exchanges: Exchange[] = [];
  const server = createServer((req, res) => {
    const headers = { ...req.headers };
    delete headers.connection;
    const noted: Record<string, string> = {};
    for (const [h, v] of Object.entries(req.headers)) if (NOTED_HEADERS.test(h)) noted[h] = String(v);
    const sha = req.headers['x-amz-content-sha256'];
    if (sha !== undefined) noted['x-amz-content-sha256'] = /^[0-9a-f]{64}$/.test(String(sha)) ? '<hex>' : String(sha);
    // A connection of its own per call: a pooled one could be closed by the
    // proxy just as it is reused, and that failure would be ours, not the proxy's.
    const up = httpRequest({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers, agent: false }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const status = upRes.statusCode ?? 0;
      const x: Exchange = { method: req.method ?? '', url: req.url ?? '', status, headers: noted };
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => { if (status >= 300) chunks.push(c); });
      upRes.on('end', () => {
        if (status >= 300) x.body = Buffer.concat(chunks).toString('utf8').slice(0, 2000);
        exchanges.push(x);
        appendFileSync(logFile, JSON.stringify(x) + '\n');
      });
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      const x = { method: req.method ?? '', url: req.url ?? '', status: 0, headers: noted, body: `proxy connection failed: ${err.message}` };
      exchanges.push(x);
      appendFileSync(logFile, JSON.stringify(x) + '\n');
      res.destroy();
    });
    req.pipe(up);
  });
  // Longer than Go's idle connection reuse (90 s), for the same reason.
  server.keepAliveTimeout = 120_000;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, exchanges }));
  });
}

// ---- what is in the shard buckets, seen straight on MinIO

export class ShardListing {
  /** every key ever seen, with the buckets it was seen in */
  readonly seen = new Map<string, Set<string>>();
  /** the shard buckets looked at: a ring change adds one */
  shards = SHARDS;

  constructor(protected readonly direct: S3Client) {}

  /** bucket → keys now; every key also goes to `noteKey` */
  async snapshot(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const bucket of this.shards) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await this.direct.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
        for (const o of page.Contents ?? []) keys.push(o.Key!);
        token = page.NextContinuationToken;
      } while (token);
      out.set(bucket, keys);
      for (const k of keys) {
        if (!this.seen.has(k)) this.seen.set(k, new Set());
        this.seen.get(k)!.add(bucket);
        await this.noteKey(bucket, k);
      }
    }
    return out;
  }

  protected async noteKey(_bucket: string, _key: string): Promise<void> {}

  /** the first group of `key` in each key it matches → the buckets those
   * keys were seen in */
  bucketsBy(key: RegExp): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const [k, buckets] of this.seen) {
      const id = key.exec(k)?.[1];
      if (!id) continue;
      if (!out.has(id)) out.set(id, new Set());
      for (const b of buckets) out.get(id)!.add(b);
    }
    return out;
  }
}

// ---- MinIO, the proxy, the recorder and the program, torn down with the test

/** A ring of the proxy's config: its placement and shard buckets. */
export interface Ring { placement: 'ring' | 'balanced'; buckets: string[] }

export interface StackOptions<P extends string> {
  /** `Tempo` or `Loki`: names its messages; lower-cased, its files, its
   * config (`<name>.yaml` next to this file) and its variables' prefix */
  name: string;
  bin: string;
  /** the key the program signs with, the only one the proxy accepts */
  key: Key;
  virtualBucket: string;
  /** variables the config reads its ports from, each given a free port; the
   * first is the one that answers /ready */
  ports: readonly P[];
  /** further variables for the config */
  env?: Record<string, string>;
  readyMs: number;
  /** how long a stopped program or proxy has before SIGKILL */
  graceMs: number;
}

export interface Stack<P extends string> {
  name: string;
  virtualBucket: string;
  work: string;
  /** a client straight to MinIO */
  s3: S3Client;
  proxyPort: number;
  proxyConfig: string;
  proxyLog: string;
  exchanges: Exchange[];
  ports: Record<P, number>;
  /** every log file the program has written to */
  programLogs: string[];
  /** starts the program with fresh data directory `<name>-data-<n>` and log
   * `<name>-<n>.log` in `work`, and waits for its /ready */
  startProgram(n: number): Promise<void>;
  /** the program's exit code or signal */
  stopProgram(): Promise<number | string | null>;
  /** Restarts the proxy on the same port with a new ring and the ring it had
   * in `previous_rings`, as an operator adds a shard. */
  changeRing(ring: Ring): Promise<void>;
}

export async function startStack<P extends string>(t: Test, opts: StackOptions<P>): Promise<Stack<P>> {
  const name = opts.name.toLowerCase();
  const prefix = opts.name.toUpperCase();
  const work = mkdtempSync(join(tmpdir(), `tss-e2e-${name}-`));
  let minio: Minio | undefined;
  let proxy: ChildProcess | undefined;
  let recorder: Server | undefined;
  let program: ChildProcess | undefined;
  t.teardown(async () => {
    if (program) await stopChild(program, opts.graceMs);
    if (recorder) await new Promise<void>((r) => recorder!.close(() => r()));
    if (proxy) await stopChild(proxy, opts.graceMs);
    if (minio) await minio.stop();
    killAll();
    if (t.passing()) rmSync(work, { recursive: true, force: true });
    else console.error(`# ${opts.name} e2e: logs kept in ${work}`);
  });

  minio = await startMinio();
  children.add(minio.process);
  const s3 = new S3Client({
    region: 'us-east-1', forcePathStyle: true, endpoint: minio.endpoint,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
  });
  t.teardown(() => s3.destroy());

  const proxyPort = await freePort();
  const proxyConfig = join(work, 'proxy.json');
  const proxyLog = join(work, 'proxy.log');
  const startProxy = async (rings: Ring & { previous_rings?: Ring[] }) => {
    writeFileSync(proxyConfig, JSON.stringify({
      listen_addr: `127.0.0.1:${proxyPort}`,
      endpoint: minio!.endpoint,
      access_key_id: MINIO_USER,
      secret_access_key: MINIO_PASSWORD,
      region: 'us-east-1',
      virtual_bucket: opts.virtualBucket,
      ...rings,
      clients: [{ access_key_id: opts.key.accessKeyId, secret_access_key: opts.key.secretAccessKey }],
      log_level: 'debug',
    }, null, 2));
    proxy = spawnLogged(process.execPath, [join(ROOT, 'bin', 'tempo-s3-shard'), '--config', proxyConfig], proxyLog, process.env);
    await waitHttp(`http://127.0.0.1:${proxyPort}/healthz`, proxy, proxyLog, 30_000);
  };
  let ring: Ring = { placement: 'ring', buckets: SHARDS };
  await startProxy(ring);

  const rec = await startRecorder(proxyPort, join(work, 's3-requests.log'));
  recorder = rec.server;

  const ports = {} as Record<P, number>;
  for (const p of opts.ports) ports[p] = await freePort();
  const config = join(work, `${name}.yaml`);
  copyFileSync(join(__dirname, `${name}.yaml`), config);
  const programLogs: string[] = [];

  return {
    name: opts.name,
    virtualBucket: opts.virtualBucket,
    work,
    s3,
    proxyPort,
    proxyConfig,
    proxyLog,
    exchanges: rec.exchanges,
    ports,
    programLogs,
    async startProgram(n) {
      const dataDir = join(work, `${name}-data-${n}`);
      mkdirSync(dataDir);
      const logFile = join(work, `${name}-${n}.log`);
      programLogs.push(logFile);
      const env = {
        ...process.env,
        ...Object.fromEntries(Object.entries<number>(ports).map(([k, v]) => [k, String(v)])),
        [`${prefix}_S3_PORT`]: String(rec.port),
        [`${prefix}_S3_ACCESS_KEY`]: opts.key.accessKeyId,
        [`${prefix}_S3_SECRET_KEY`]: opts.key.secretAccessKey,
        [`${prefix}_DATA_DIR`]: dataDir,
        ...opts.env,
      };
      program = spawnLogged(opts.bin, [`-config.file=${config}`, '-config.expand-env=true'], logFile, env);
      await waitHttp(`http://127.0.0.1:${ports[opts.ports[0]]}/ready`, program, logFile, opts.readyMs);
    },
    stopProgram: () => stopChild(program!, opts.graceMs),
    async changeRing(next) {
      await stopChild(proxy!, opts.graceMs);
      await startProxy({ ...next, previous_rings: [ring] });
      ring = next;
    },
  };
}

// ---- checks both runs make at the end

/** Every key seen sits in one shard, the one `locate` names. */
export async function checkPlacement(t: Test, listing: ShardListing, proxyConfig: string): Promise<void> {
  await listing.snapshot().catch(() => {});
  const keys = [...listing.seen.keys()];
  t.ok(keys.length > 0, `${keys.length} keys seen in the shards`);
  const inSeveral = keys.filter((k) => listing.seen.get(k)!.size > 1);
  t.same(inSeveral, [], 'no key in two shards');

  const located = await locate(proxyConfig, keys);
  t.equal(located.status, 0, `locate exits 0 ${located.stderr}`);
  const owner = new Map(located.stdout.trim().split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
  const misplaced = keys.filter((k) => !listing.seen.get(k)!.has(owner.get(k) ?? '?'))
    .map((k) => `${k} in ${[...listing.seen.get(k)!]}, locate says ${owner.get(k)}`);
  t.same(misplaced, [], 'every key is in the bucket `locate` names');
}

export function checkProxyLog(t: Test, proxyLog: string): void {
  const proxyErrors = readLines(proxyLog).filter((l) => /"level":"error"/.test(l));
  t.same(proxyErrors.slice(0, 30), [], `no errors in the proxy's log (${proxyErrors.length})`);
}

/** No failed S3 answer but NoSuchKey, and the program's calls were
 * signature-checked. */
export async function checkS3Answers(t: Test, stack: Stack<string>): Promise<void> {
  // A 404 to HEAD has no body; Tempo's and Loki's clients read it as not found.
  const notFound = stack.exchanges.filter((x) => x.status === 404 && (x.method === 'HEAD' || /<Code>NoSuchKey<\/Code>/.test(x.body ?? '')));
  for (const x of notFound.slice(0, 10)) t.comment(`404 NoSuchKey (expected by ${stack.name}): ${x.method} ${x.url}`);
  const bad = stack.exchanges.filter((x) => (x.status >= 400 || x.status === 0) && !notFound.includes(x))
    .map((x) => `${x.method} ${x.url} → ${x.status} ${x.body ?? ''}`);
  t.same(bad.slice(0, 20), [], `no failed S3 answers other than NoSuchKey (${bad.length} of ${stack.exchanges.length} calls)`);

  // The program's calls went through only because they were signed with a
  // key the proxy accepts: an unsigned one is turned away.
  const anonymous = await fetch(`http://127.0.0.1:${stack.proxyPort}/${stack.virtualBucket}/?list-type=2`);
  await anonymous.text();
  t.equal(anonymous.status, 403, `the proxy refuses an unsigned request, so ${stack.name}'s were signature-checked`);
}
