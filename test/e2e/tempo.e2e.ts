import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { S3Client, ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3';
import { MINIO_PASSWORD, MINIO_USER, freePort, startMinio } from '../helpers/minio';
import type { Minio } from '../helpers/minio';
import { run } from '../helpers/run';

// Grafana Tempo, built from source, storing its blocks through the proxy
// (a child process, as deployed) into three shard buckets on MinIO: traces
// go in over OTLP, blocks are flushed, Tempo restarts with an empty WAL and
// must find every trace in object storage; each block must sit whole in the
// shard the ring names, blocks must spread over all shards, and compaction
// must mark and later clear its inputs.

const ROOT = resolve(__dirname, '..', '..');
const SHARDS = ['shard1', 'shard2', 'shard3'];
const TENANT = 'single-tenant';
const SERVICE = 'e2e';
const TRACES_PER_BATCH = 5;
// 12 blocks miss one of three shards with probability 3·(2/3)^12 ≈ 2 %;
// batches go on (up to MAX_BATCHES) until every shard holds a block.
const MIN_BATCHES = 12;
const MAX_BATCHES = 30;
// A little longer than the ingester's max_block_duration, so that each batch
// tends to land in a block of its own.
const BATCH_INTERVAL_MS = 6_000;
const TEMPO_KEY = { accessKeyId: 'tempo-e2e', secretAccessKey: 'tempo-e2e-secret-key' };
const BLOCK_KEY = new RegExp(`^${TENANT}/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(.+)$`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}
const tail = (file: string, lines = 40) => readLines(file).slice(-lines).join('\n');

async function waitHttp(url: string, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${url}: the process exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile)}`);
    }
    try {
      if ((await fetch(url)).status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(250);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms:\n${tail(logFile)}`);
}

// ---- a pass-through between Tempo and the proxy that writes down every S3
// call, so a wrong answer can be shown with the request that got it

interface Exchange { method: string; url: string; status: number; body?: string }

function startRecorder(target: number, logFile: string): Promise<{ server: Server; port: number; exchanges: Exchange[] }> {
  const exchanges: Exchange[] = [];
  const server = createServer((req, res) => {
    const headers = { ...req.headers };
    delete headers.connection;
    // A connection of its own per call: a pooled one could be closed by the
    // proxy just as it is reused, and that failure would be ours, not the proxy's.
    const up = httpRequest({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers, agent: false }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const status = upRes.statusCode ?? 0;
      const x: Exchange = { method: req.method ?? '', url: req.url ?? '', status };
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
      const x = { method: req.method ?? '', url: req.url ?? '', status: 0, body: `proxy connection failed: ${err.message}` };
      exchanges.push(x);
      appendFileSync(logFile, JSON.stringify(x) + '\n');
      res.destroy();
    });
    req.pipe(up);
  });
  // Longer than Go's idle connection reuse, for the same reason.
  server.keepAliveTimeout = 120_000;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, exchanges }));
  });
}

// ---- OTLP/HTTP JSON

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

interface SentTrace { id: string; spans: number }

function otlpBatch(runId: string, batch: number, traces: SentTrace[]): unknown {
  const now = BigInt(Date.now()) * 1_000_000n;
  const spans = traces.flatMap((tr) => {
    const root = hex(8);
    return Array.from({ length: tr.spans }, (_, i) => ({
      traceId: tr.id,
      spanId: i === 0 ? root : hex(8),
      ...(i === 0 ? {} : { parentSpanId: root }),
      name: i === 0 ? 'e2e-root' : `e2e-child-${i}`,
      kind: 2,
      startTimeUnixNano: String(now - 50_000_000n + BigInt(i) * 1_000_000n),
      endTimeUnixNano: String(now - BigInt(i) * 1_000_000n),
      attributes: [
        { key: 'e2e.run', value: { stringValue: runId } },
        { key: 'e2e.batch', value: { intValue: String(batch) } },
      ],
    }));
  });
  return {
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: SERVICE } }] },
      scopeSpans: [{ scope: { name: 'tempo-s3-shard-e2e' }, spans }],
    }],
  };
}

async function postOtlp(port: number, body: unknown): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  // Right after /ready the ingester may not be ACTIVE in its ring yet.
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    if (r.ok) return;
    last = `${r.status} ${await r.text()}`;
    await sleep(500);
  }
  throw new Error(`OTLP push refused: ${last}`);
}

// Tempo prints trace IDs without leading zeros in search results.
const normaliseId = (id: string) => id.toLowerCase().replace(/^0+/, '');

function countSpans(trace: unknown): { spans: number; services: Set<string> } {
  const out = { spans: 0, services: new Set<string>() };
  const t = trace as { batches?: unknown[]; resourceSpans?: unknown[]; trace?: { resourceSpans?: unknown[] } };
  for (const rs of (t.batches ?? t.resourceSpans ?? t.trace?.resourceSpans ?? []) as Record<string, any>[]) {
    for (const a of rs.resource?.attributes ?? []) if (a.key === 'service.name') out.services.add(a.value?.stringValue);
    for (const ss of rs.scopeSpans ?? rs.instrumentationLibrarySpans ?? []) out.spans += (ss.spans ?? []).length;
  }
  return out;
}

// ---- what is in the shard buckets, seen straight on MinIO

interface BlockMeta { blockID: string; compactionLevel?: number; totalObjects?: number }

class Storage {
  /** every key ever seen, with the buckets it was seen in */
  readonly seen = new Map<string, Set<string>>();
  /** blocks written by the ingester (compaction level 0), with their trace counts */
  readonly ingesterBlocks = new Map<string, number>();
  readonly compactedBlocks = new Set<string>();
  readonly allBlocks = new Set<string>();
  private readonly metaRead = new Set<string>();

  constructor(private readonly direct: S3Client) {}

  async snapshot(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const bucket of SHARDS) {
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
        const m = BLOCK_KEY.exec(k);
        if (!m) continue;
        this.allBlocks.add(m[1]);
        if (m[2] === 'meta.compacted.json') this.compactedBlocks.add(m[1]);
        // Compaction may move meta.json to meta.compacted.json between two
        // looks; both hold the block's level and trace count.
        if ((m[2] === 'meta.json' || m[2] === 'meta.compacted.json') && !this.metaRead.has(m[1])) {
          const meta = await this.readMeta(bucket, k);
          if (!meta) continue;
          this.metaRead.add(m[1]);
          if ((meta.compactionLevel ?? 0) === 0) this.ingesterBlocks.set(m[1], meta.totalObjects ?? 0);
        }
      }
    }
    return out;
  }

  private async readMeta(bucket: string, key: string): Promise<BlockMeta | undefined> {
    try {
      const r = await this.direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return JSON.parse(await r.Body!.transformToString()) as BlockMeta;
    } catch {
      return undefined; // compacted and cleared between the listing and the read
    }
  }

  /** shard → block IDs, from a snapshot */
  static blocksByShard(snap: Map<string, string[]>): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const [bucket, keys] of snap) {
      out.set(bucket, new Set(keys.map((k) => BLOCK_KEY.exec(k)?.[1]).filter((b): b is string => !!b)));
    }
    return out;
  }

  shardsWithBlocks(): Set<string> {
    const shards = new Set<string>();
    for (const [k, buckets] of this.seen) if (BLOCK_KEY.test(k)) for (const b of buckets) shards.add(b);
    return shards;
  }

  tracesInIngesterBlocks(): number {
    let n = 0;
    for (const v of this.ingesterBlocks.values()) n += v;
    return n;
  }
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(1000);
  }
}

// ---- the run

t.test('Grafana Tempo on tempo-s3-shard', async (t) => {
  const started = Date.now();

  const build = await run('bash', [join(__dirname, 'build-tempo.sh')], { timeoutMs: 3_600_000 });
  if (build.status !== 0) throw new Error(`build-tempo.sh failed:\n${build.stderr}`);
  const tempoBin = build.stdout.trim().split('\n').pop()!;
  const version = await run(tempoBin, ['-version']);
  t.comment(version.stdout.split('\n')[0]);

  const work = mkdtempSync(join(tmpdir(), 'tss-e2e-tempo-'));
  let minio: Minio | undefined;
  let proxy: ChildProcess | undefined;
  let recorder: Server | undefined;
  let tempo: ChildProcess | undefined;
  t.teardown(async () => {
    if (tempo) await stopChild(tempo);
    if (recorder) await new Promise<void>((r) => recorder!.close(() => r()));
    if (proxy) await stopChild(proxy);
    if (minio) await minio.stop();
    killAll();
    if (t.passing()) rmSync(work, { recursive: true, force: true });
    else console.error(`# Tempo e2e: logs kept in ${work}`);
  });

  minio = await startMinio();
  children.add(minio.process);
  const s3 = new S3Client({
    region: 'us-east-1', forcePathStyle: true, endpoint: minio.endpoint,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
  });
  t.teardown(() => s3.destroy());
  const storage = new Storage(s3);

  const proxyPort = await freePort();
  const proxyConfig = join(work, 'proxy.json');
  writeFileSync(proxyConfig, JSON.stringify({
    listen_addr: `127.0.0.1:${proxyPort}`,
    endpoint: minio.endpoint,
    access_key_id: MINIO_USER,
    secret_access_key: MINIO_PASSWORD,
    region: 'us-east-1',
    buckets: SHARDS,
    clients: [{ access_key_id: TEMPO_KEY.accessKeyId, secret_access_key: TEMPO_KEY.secretAccessKey }],
    log_level: 'debug',
  }, null, 2));
  const proxyLog = join(work, 'proxy.log');
  proxy = spawnLogged(process.execPath, [join(ROOT, 'bin', 'tempo-s3-shard'), '--config', proxyConfig], proxyLog, process.env);
  await waitHttp(`http://127.0.0.1:${proxyPort}/healthz`, proxy, proxyLog, 30_000);

  const s3Log = join(work, 's3-requests.log');
  const rec = await startRecorder(proxyPort, s3Log);
  recorder = rec.server;

  const ports = {
    TEMPO_HTTP_PORT: await freePort(),
    TEMPO_GRPC_PORT: await freePort(),
    TEMPO_OTLP_HTTP_PORT: await freePort(),
    TEMPO_MEMBERLIST_PORT: await freePort(),
  };
  const tempoConfig = join(work, 'tempo.yaml');
  copyFileSync(join(__dirname, 'tempo.yaml'), tempoConfig);
  const tempoLogs: string[] = [];
  const startTempo = async (n: number) => {
    const dataDir = join(work, `tempo-data-${n}`); // a fresh WAL each start
    mkdirSync(dataDir);
    const logFile = join(work, `tempo-${n}.log`);
    tempoLogs.push(logFile);
    const env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      TEMPO_S3_PORT: String(rec.port),
      TEMPO_S3_ACCESS_KEY: TEMPO_KEY.accessKeyId,
      TEMPO_S3_SECRET_KEY: TEMPO_KEY.secretAccessKey,
      TEMPO_DATA_DIR: dataDir,
    };
    const child = spawnLogged(tempoBin, [`-config.file=${tempoConfig}`, '-config.expand-env=true'], logFile, env);
    await waitHttp(`http://127.0.0.1:${ports.TEMPO_HTTP_PORT}/ready`, child, logFile, 120_000);
    return child;
  };
  const tempoApi = (path: string) => fetch(`http://127.0.0.1:${ports.TEMPO_HTTP_PORT}${path}`);

  const runId = hex(6);
  const sent: SentTrace[] = [];
  const since = Math.floor(Date.now() / 1000) - 60;

  try {
    tempo = await startTempo(1);

    await t.test('traces go in over OTLP and are flushed as blocks into the shards', async (t) => {
      let batch = 0;
      while (batch < MIN_BATCHES || (storage.shardsWithBlocks().size < SHARDS.length && batch < MAX_BATCHES)) {
        const traces = Array.from({ length: TRACES_PER_BATCH }, () => ({ id: hex(16), spans: 1 + Math.floor(Math.random() * 4) }));
        await postOtlp(ports.TEMPO_OTLP_HTTP_PORT, otlpBatch(runId, batch, traces));
        sent.push(...traces);
        batch++;
        await sleep(BATCH_INTERVAL_MS);
        await storage.snapshot();
      }
      t.comment(`${sent.length} traces in ${batch} batches`);
      const flushed = await waitFor('every trace in a flushed block', 120_000, async () => {
        await storage.snapshot();
        const n = storage.tracesInIngesterBlocks();
        return n >= sent.length ? n : undefined;
      }).catch((err: Error) => { t.fail(err.message); return storage.tracesInIngesterBlocks(); });
      t.equal(flushed, sent.length, 'the ingester blocks hold exactly the traces sent');
      t.comment(`${storage.ingesterBlocks.size} ingester blocks, ${storage.allBlocks.size} blocks in all so far`);
      t.ok(storage.ingesterBlocks.size >= 2, 'several blocks were flushed');
    });

    await t.test('compaction marks its input blocks (meta.compacted.json)', async (t) => {
      const marked = await waitFor('a meta.compacted.json', 120_000, async () => {
        await storage.snapshot();
        return storage.compactedBlocks.size > 0 ? storage.compactedBlocks.size : undefined;
      }).catch((err: Error) => { t.fail(err.message); return 0; });
      t.ok(marked > 0, `${marked} blocks marked compacted`);
    });

    await t.test('after a restart with an empty WAL, every trace is found in object storage', async (t) => {
      await stopChild(tempo!);
      tempo = await startTempo(2);

      const missing = new Map(sent.map((s) => [s.id, s]));
      const wrong: string[] = [];
      await waitFor('every trace by ID', 120_000, async () => {
        for (const [id, s] of missing) {
          const r = await tempoApi(`/api/traces/${id}`);
          if (r.status !== 200) { await r.text(); continue; }
          const got = countSpans(await r.json());
          if (got.spans !== s.spans || !got.services.has(SERVICE)) wrong.push(`${id}: ${got.spans} spans, services ${[...got.services]}`);
          missing.delete(id);
        }
        return missing.size === 0 ? true : undefined;
      }).catch((err: Error) => t.fail(`${err.message}; ${missing.size} of ${sent.length} not found, e.g. ${[...missing.keys()].slice(0, 3).join(', ')}`));
      t.equal(missing.size, 0, `all ${sent.length} traces found by ID`);
      t.same(wrong, [], 'each trace comes back whole');

      const want = new Set(sent.map((s) => normaliseId(s.id)));
      const q = `{resource.service.name="${SERVICE}" && span.e2e.run="${runId}"}`;
      let found = new Set<string>();
      let lastAnswer = '';
      await waitFor('every trace by TraceQL search', 120_000, async () => {
        const end = Math.floor(Date.now() / 1000) + 60;
        const r = await tempoApi(`/api/search?q=${encodeURIComponent(q)}&start=${since}&end=${end}&limit=${sent.length * 2}&spss=1`);
        lastAnswer = `${r.status}`;
        if (r.status !== 200) { lastAnswer += ` ${await r.text()}`; return undefined; }
        const body = await r.json() as { traces?: { traceID: string }[] };
        found = new Set((body.traces ?? []).map((x) => normaliseId(x.traceID)));
        return [...want].every((id) => found.has(id)) ? true : undefined;
      }).catch((err: Error) => t.fail(`${err.message}; last answer ${lastAnswer}`));
      t.equal([...want].filter((id) => found.has(id)).length, want.size, `TraceQL ${q} finds all ${want.size} traces`);
      t.equal([...found].filter((id) => !want.has(id)).length, 0, 'and no others');
    });

    await t.test('compacted blocks are cleared after their retention', async (t) => {
      const marked = [...storage.compactedBlocks];
      await waitFor('the compacted blocks to be deleted', 120_000, async () => {
        const byShard = Storage.blocksByShard(await storage.snapshot());
        const left = marked.filter((b) => [...byShard.values()].some((s) => s.has(b)));
        return left.length === 0 ? true : undefined;
      }).catch((err: Error) => t.fail(err.message));
      const byShard = Storage.blocksByShard(await storage.snapshot());
      const left = marked.filter((b) => [...byShard.values()].some((s) => s.has(b)));
      t.same(left, [], `all ${marked.length} blocks marked compacted are gone from the shards`);
    });
  } catch (err) {
    t.fail((err as Error).message);
  }

  await t.test('every block sits whole in the shard the ring names, and blocks use every shard', async (t) => {
    await storage.snapshot().catch(() => {});
    const keys = [...storage.seen.keys()];
    t.ok(keys.length > 0, `${keys.length} keys seen in the shards`);
    const inSeveral = keys.filter((k) => storage.seen.get(k)!.size > 1);
    t.same(inSeveral, [], 'no key in two shards');

    const located = await run(process.execPath, [join(ROOT, 'bin', 'tempo-s3-shard'), 'locate', '--config', proxyConfig, ...keys]);
    t.equal(located.status, 0, `locate exits 0 ${located.stderr}`);
    const owner = new Map(located.stdout.trim().split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
    const misplaced = keys.filter((k) => !storage.seen.get(k)!.has(owner.get(k) ?? '?'))
      .map((k) => `${k} in ${[...storage.seen.get(k)!]}, locate says ${owner.get(k)}`);
    t.same(misplaced, [], 'every key is in the bucket `locate` names');

    const blockShards = new Map<string, Set<string>>();
    for (const [k, buckets] of storage.seen) {
      const m = BLOCK_KEY.exec(k);
      if (!m) continue;
      if (!blockShards.has(m[1])) blockShards.set(m[1], new Set());
      for (const b of buckets) blockShards.get(m[1])!.add(b);
    }
    const split = [...blockShards].filter(([, s]) => s.size !== 1).map(([b, s]) => `${b}: ${[...s]}`);
    t.same(split, [], `each of the ${blockShards.size} blocks has all its files in one shard`);
    const perShard = SHARDS.map((s) => `${s}: ${[...blockShards.values()].filter((b) => b.has(s)).length}`);
    t.equal(storage.shardsWithBlocks().size, SHARDS.length, `blocks spread over all shards (${perShard.join(', ')})`);
  });

  await t.test('no storage errors: Tempo log, proxy log, S3 answers', async (t) => {
    const storageWords = /s3|storage|backend|bucket|block|poll|compact|flush|retention|NoSuch|minio/i;
    const tempoErrors = tempoLogs.flatMap(readLines).filter((l) => /level=error/.test(l));
    const storageErrors = tempoErrors.filter((l) => storageWords.test(l));
    for (const l of tempoErrors.filter((l) => !storageWords.test(l)).slice(0, 20)) t.comment(`other Tempo error: ${l}`);
    t.same(storageErrors.slice(0, 30), [], `no storage errors in Tempo's log (${storageErrors.length})`);

    const proxyErrors = readLines(proxyLog).filter((l) => /"level":"error"/.test(l));
    t.same(proxyErrors.slice(0, 30), [], `no errors in the proxy's log (${proxyErrors.length})`);

    const ops = new Map<string, number>();
    for (const x of rec.exchanges) {
      const q = x.url.includes('?') ? x.url.slice(x.url.indexOf('?') + 1).split('&').map((p) => p.split('=')[0]).sort().join(',') : '';
      const k = `${x.method}${q ? ' ?' + q : ''} ${x.status}`;
      ops.set(k, (ops.get(k) ?? 0) + 1);
    }
    t.comment(`S3 calls Tempo made: ${[...ops].sort().map(([k, n]) => `${k} ×${n}`).join('; ')}`);
    // minio-go reads a 404 to HEAD, which has no body, as NoSuchKey too.
    const notFound = rec.exchanges.filter((x) => x.status === 404 && (x.method === 'HEAD' || /<Code>NoSuchKey<\/Code>/.test(x.body ?? '')));
    for (const x of notFound.slice(0, 10)) t.comment(`404 NoSuchKey (expected by Tempo): ${x.method} ${x.url}`);
    const bad = rec.exchanges.filter((x) => (x.status >= 400 || x.status === 0) && !notFound.includes(x))
      .map((x) => `${x.method} ${x.url} → ${x.status} ${x.body ?? ''}`);
    t.same(bad.slice(0, 20), [], `no failed S3 answers other than NoSuchKey (${bad.length} of ${rec.exchanges.length} calls)`);

    // Tempo's calls went through only because they were signed with a key
    // the proxy accepts: an unsigned one is turned away.
    const anonymous = await fetch(`http://127.0.0.1:${proxyPort}/proxy-bucket/?list-type=2`);
    await anonymous.text();
    t.equal(anonymous.status, 403, 'the proxy refuses an unsigned request, so Tempo\'s were signature-checked');
  });

  t.comment(`e2e took ${Math.round((Date.now() - started) / 1000)} s`);
});
