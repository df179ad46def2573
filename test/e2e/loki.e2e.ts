import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SHARDS, ShardListing, buildProgram, checkPlacement, checkProxyLog, checkS3Answers, locate, readLines, sleep, startStack, waitFor } from './common';
import type { Exchange } from './common';

// Grafana Loki, built from source, storing its chunks and TSDB index through
// the proxy (a child process, as deployed) into three shard buckets on MinIO:
// log lines go in over the HTTP push API, chunks are flushed, the index is
// shipped when Loki stops, and Loki restarts with empty local directories and
// must answer every line from object storage, before and after its compactor
// has rewritten the index. Every object must sit in the shard the ring names,
// and the streams' chunks must spread over all shards.

const VIRTUAL_BUCKET = 'loki';
// auth_enabled: false stores everything under this tenant.
const TENANT = 'fake';
// The ring hashes a chunk by `<tenant>/<fingerprint>`, so streams, not
// chunks, are what spread: 30 streams miss one of three shards with
// probability 3·(2/3)^30 ≈ 2·10⁻⁵.
const STREAMS = 30;
const LINES_PER_STREAM = 50;
const APPS = ['api', 'db', 'web'];
// Loki's TSDB index has a table per UTC day (`index/index_<day>/`), and the
// ring places each table whole. The lines span the hour either side of a
// midnight between two days whose tables the ring puts in different shards,
// so that Loki's listing of `index/` has to merge common prefixes from two
// shards. Such a pair is looked for up to this many days back (within the
// config's reject_old_samples_max_age).
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const DAYS_BACK = 10;
const LOKI_KEY = { accessKeyId: 'loki-e2e', secretAccessKey: 'loki-e2e-secret-key' };
const CHUNK_KEY = new RegExp(`^${TENANT}/([0-9a-f]+)/[0-9a-f]+:[0-9a-f]+:[0-9a-f]+$`);
// Ingesters ship one multi-tenant file per table; the compactor rewrites it
// into per-tenant files under the tenant's directory.
const INDEX_KEY = /^index\/(index_\d+)\/(?:([^/]+)\/)?[^/]+\.tsdb\.gz$/;

/** `GET ?list-type,prefix=index/ [If-Match]`: the call's shape, with the
 * values of the query parameters that say what a listing walks. */
function callShape(x: Exchange): string {
  const u = new URL(x.url, 'http://recorder');
  const params = [...u.searchParams.keys()].sort().map((k) => {
    if (k !== 'prefix' && k !== 'delimiter') return k;
    // Table and tenant names vary; their shape is what tells the mix.
    const v = u.searchParams.get(k)!.replace(/index_\d+/g, 'index_N');
    return `${k}=${v || '""'}`;
  });
  const flags = Object.entries(x.headers).map(([h, v]) => (h === 'x-amz-content-sha256' ? `sha256=${v}` : h));
  return `${x.method}${params.length ? ' ?' + params.join(',') : ''}${flags.length ? ' [' + flags.sort().join(' ') + ']' : ''}`;
}

// ---- the log lines

interface Line { stream: string; ts: bigint; line: string }
interface StreamDef { labels: Record<string, string>; lines: Line[] }

async function midnightBetweenShards(proxyConfig: string): Promise<{ midnight: number; tables: string[]; shards: string[] }> {
  // The newest midnight at least ten minutes ago, so the later day has lines too.
  let day = Math.floor((Date.now() - 10 * 60_000) / DAY_MS);
  for (let i = 0; i < DAYS_BACK; i++, day--) {
    const tables = [`index_${day - 1}`, `index_${day}`];
    const located = await locate(proxyConfig, tables.map((tb) => `index/${tb}/x.tsdb.gz`));
    if (located.status !== 0) throw new Error(`locate failed: ${located.stderr}`);
    const shards = located.stdout.trim().split('\n').map((l) => l.split('\t')[1]);
    if (shards[0] !== shards[1]) return { midnight: day * DAY_MS, tables, shards };
  }
  throw new Error(`the index tables of the last ${DAYS_BACK} days all sit in one shard`);
}

function makeStreams(runId: string, startMs: number, endMs: number): StreamDef[] {
  const step = Math.floor((endMs - startMs) / LINES_PER_STREAM);
  return Array.from({ length: STREAMS }, (_, i) => {
    const labels = { job: 'e2e', run: runId, app: APPS[i % APPS.length], stream: `s${i}` };
    // Each stream in time order (Loki accepts older lines only within half
    // of max_chunk_age of a stream's newest); streams interleave by a few ms.
    const lines = Array.from({ length: LINES_PER_STREAM }, (_, j) => ({
      stream: labels.stream,
      ts: BigInt(startMs + j * step + i) * 1_000_000n + BigInt(j),
      line: `e2e run=${runId} stream=s${i} line=${j} ${randomBytes(20).toString('hex')}`,
    }));
    return { labels, lines };
  });
}

async function push(port: number, streams: StreamDef[]): Promise<void> {
  const body = JSON.stringify({
    streams: streams.map((s) => ({ stream: s.labels, values: s.lines.map((l) => [String(l.ts), l.line]) })),
  });
  const deadline = Date.now() + 30_000;
  let last = '';
  // Right after /ready the ingester may not be ACTIVE in its ring yet.
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${port}/loki/api/v1/push`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body,
    });
    if (r.status === 204) return;
    last = `${r.status} ${await r.text()}`;
    await sleep(500);
  }
  throw new Error(`push refused: ${last}`);
}

const lineId = (l: Line) => `${l.stream} ${l.ts} ${l.line}`;

interface QueryAnswer { lines: Line[]; labelsOf: Map<string, string>; error?: string }

async function queryRange(port: number, query: string, startNs: bigint, endNs: bigint): Promise<QueryAnswer> {
  const params = new URLSearchParams({
    query, start: String(startNs), end: String(endNs), direction: 'forward', limit: '5000',
  });
  const r = await fetch(`http://127.0.0.1:${port}/loki/api/v1/query_range?${params}`);
  if (r.status !== 200) return { lines: [], labelsOf: new Map(), error: `${r.status} ${(await r.text()).slice(0, 500)}` };
  const body = await r.json() as { data: { resultType: string; result: { stream: Record<string, string>; values: [string, string][] }[] } };
  const lines: Line[] = [];
  const labelsOf = new Map<string, string>();
  for (const s of body.data.result) {
    labelsOf.set(s.stream.stream, JSON.stringify(Object.entries(s.stream).sort()));
    for (const [ts, line] of s.values) lines.push({ stream: s.stream.stream, ts: BigInt(ts), line });
  }
  return { lines, labelsOf };
}

// ---- the run

// Loki has two S3 clients: its own on aws-sdk-go-v2 (the default) and
// thanos-io/objstore on minio-go (storage_config.use_thanos_objstore). They
// differ on the wire, so the whole run is made with each.
const CLIENTS = [
  { name: 'aws-sdk-go-v2, the default client', thanos: false },
  { name: 'thanos-io/objstore on minio-go', thanos: true },
];

t.test('Grafana Loki on tempo-s3-shard', async (t) => {
  const started = Date.now();
  const { bin, version } = await buildProgram('build-loki.sh');
  t.comment(`${version}; build-loki.sh took ${Math.round((Date.now() - started) / 1000)} s`);
  for (const client of CLIENTS) await t.test(`with ${client.name}`, (t) => scenario(t, bin, client.thanos));
});

async function scenario(t: Test, bin: string, thanos: boolean): Promise<void> {
  const started = Date.now();
  const stack = await startStack(t, {
    name: 'Loki', bin, key: LOKI_KEY, virtualBucket: VIRTUAL_BUCKET,
    ports: ['LOKI_HTTP_PORT', 'LOKI_GRPC_PORT', 'LOKI_MEMBERLIST_PORT'],
    env: { LOKI_USE_THANOS_OBJSTORE: String(thanos) },
    readyMs: 180_000, graceMs: 60_000,
  });
  const { ports } = stack;
  const storage = new ShardListing(stack.s3);
  const metric = async (name: string): Promise<number | undefined> => {
    const text = await (await fetch(`http://127.0.0.1:${ports.LOKI_HTTP_PORT}/metrics`)).text();
    const values = text.split('\n').filter((l) => l.startsWith(name + ' ') || l.startsWith(name + '{')).map((l) => Number(l.split(' ').pop()));
    return values.length ? values.reduce((a, b) => a + b, 0) : undefined;
  };

  const runId = randomBytes(6).toString('hex');
  const { midnight, tables, shards: tableShards } = await midnightBetweenShards(stack.proxyConfig);
  const streams = makeStreams(runId, midnight - HOUR_MS, Math.min(midnight + HOUR_MS, Date.now() - 60_000));
  t.comment(`lines from ${new Date(midnight - HOUR_MS).toISOString()}, across the midnight between ${tables.join(' (' + tableShards[0] + ') and ')} (${tableShards[1]})`);
  const sent = streams.flatMap((s) => s.lines);
  const startNs = sent.reduce((m, l) => (l.ts < m ? l.ts : m), sent[0].ts);
  const endNs = sent.reduce((m, l) => (l.ts > m ? l.ts : m), sent[0].ts) + 1n;
  const chunkStreams = () => new Set([...storage.seen.keys()].map((k) => CHUNK_KEY.exec(k)?.[1]).filter((f): f is string => !!f));
  const indexKeys = (snap: Map<string, string[]>) => [...snap.values()].flat().filter((k) => INDEX_KEY.test(k));

  // Every line comes back exactly once, from its stream, with its labels.
  const checkAnswer = (t: Test, what: string, got: QueryAnswer, want: Line[]) => {
    const wantIds = want.map(lineId);
    const gotIds = got.lines.map(lineId);
    const wantSet = new Set(wantIds);
    const gotSet = new Set(gotIds);
    const missing = wantIds.filter((id) => !gotSet.has(id));
    const extra = gotIds.filter((id) => !wantSet.has(id));
    t.equal(got.lines.length, want.length, `${what}: ${want.length} lines`);
    t.same(missing.slice(0, 5), [], `${what}: none missing (${missing.length})`);
    t.same(extra.slice(0, 5), [], `${what}: none unexpected or repeated (${extra.length + gotIds.length - gotSet.size})`);
    const perStream = new Map<string, bigint[]>();
    for (const l of got.lines) perStream.set(l.stream, [...(perStream.get(l.stream) ?? []), l.ts]);
    const unordered = [...perStream].filter(([, ts]) => ts.some((x, i) => i > 0 && x < ts[i - 1])).map(([s]) => s);
    t.same(unordered, [], `${what}: each stream in time order (direction=forward)`);
    const wrongLabels = streams.filter((s) => got.labelsOf.has(s.labels.stream))
      .filter((s) => got.labelsOf.get(s.labels.stream) !== JSON.stringify(Object.entries(s.labels).sort()))
      .map((s) => `${s.labels.stream}: ${got.labelsOf.get(s.labels.stream)}`);
    t.same(wrongLabels, [], `${what}: streams carry exactly the labels pushed`);
  };

  // Loki may still be loading the index it just listed: ask until the answer
  // is whole or the time is up, then judge the last answer.
  const queryUntilWhole = async (query: string, want: number): Promise<QueryAnswer> => {
    let answer: QueryAnswer = { lines: [], labelsOf: new Map() };
    await waitFor(`${query} to return ${want} lines`, 120_000, async () => {
      answer = await queryRange(ports.LOKI_HTTP_PORT, query, startNs, endNs);
      return !answer.error && answer.lines.length >= want ? true : undefined;
    }).catch(() => {});
    return answer;
  };

  const queries: { what: string; query: string; want: Line[] }[] = [
    { what: 'the whole run', query: `{job="e2e", run="${runId}"}`, want: sent },
    ...APPS.map((app) => ({
      what: `app ${app}`,
      query: `{job="e2e", run="${runId}", app="${app}"}`,
      want: streams.filter((s) => s.labels.app === app).flatMap((s) => s.lines),
    })),
    {
      what: 'a line filter',
      query: `{job="e2e", run="${runId}"} |= "line=7 "`,
      want: sent.filter((l) => l.line.includes('line=7 ')),
    },
  ];
  const queryAll = async (t: Test, when: string) => {
    for (const q of queries) {
      const answer = await queryUntilWhole(q.query, q.want.length);
      if (answer.error) t.fail(`${when}, ${q.what}: ${answer.error}`);
      checkAnswer(t, `${when}, ${q.what} (${q.query})`, answer, q.want);
    }
  };

  try {
    await stack.startProgram(1);

    await t.test('log lines go in over the push API and their chunks reach the shards', async (t) => {
      for (let i = 0; i < streams.length; i += 5) await push(ports.LOKI_HTTP_PORT, streams.slice(i, i + 5));
      t.comment(`${sent.length} lines in ${streams.length} streams pushed`);
      // Chunks leave memory only once stored; every stream has chunks in storage.
      await waitFor('every stream\'s chunks in storage and none left in memory', 120_000, async () => {
        await storage.snapshot();
        const inMemory = await metric('loki_ingester_memory_chunks');
        return chunkStreams().size >= STREAMS && inMemory === 0 ? true : undefined;
      }).catch((err: Error) => t.fail(err.message));
      t.equal(chunkStreams().size, STREAMS, `chunks of all ${STREAMS} streams are in the shards`);
      t.equal(await metric('loki_ingester_memory_chunks'), 0, 'no chunk is left in the ingester\'s memory');
      const flushed = await metric('loki_ingester_chunks_flushed_total');
      const chunkKeys = [...storage.seen.keys()].filter((k) => CHUNK_KEY.test(k));
      t.equal(chunkKeys.length, flushed, `as many chunk objects as the ingester flushed (${flushed})`);
      t.ok(chunkKeys.length > STREAMS, `streams were cut into several chunks (${chunkKeys.length})`);
    });

    await t.test('on shutdown Loki ships its TSDB index to the shards', async (t) => {
      const status = await stack.stopProgram();
      t.equal(status, 0, 'Loki stops cleanly');
      const index = await waitFor('a TSDB index file in each table', 30_000, async () => {
        const keys = indexKeys(await storage.snapshot());
        return tables.every((tb) => keys.some((k) => INDEX_KEY.exec(k)![1] === tb)) ? keys : undefined;
      }).catch((err: Error) => { t.fail(err.message); return indexKeys(new Map()); });
      t.same([...new Set(index.map((k) => INDEX_KEY.exec(k)![1]))].sort(), tables, `index files shipped: ${index.join(', ')}`);
    });

    await t.test('after a restart with empty local directories, every line is answered from object storage', async (t) => {
      // What the first Loki kept locally is in its own directory, out of the second's sight.
      const first = join(stack.work, 'loki-data-1');
      t.same(['tsdb-shipper-active', 'wal'].filter((d) => !existsSync(join(first, d))), [], 'the first Loki\'s WAL and TSDB head were under its own data directory');
      await stack.startProgram(2);
      await queryAll(t, 'after restart');
    });

    await t.test('the compactor rewrites the index per tenant, and every line is still answered', async (t) => {
      const compacted = await waitFor('a per-tenant index file and no multi-tenant one', 180_000, async () => {
        const keys = indexKeys(await storage.snapshot());
        const perTenant = keys.filter((k) => INDEX_KEY.exec(k)![2] === TENANT);
        const shared = keys.filter((k) => INDEX_KEY.exec(k)![2] === undefined);
        return perTenant.length > 0 && shared.length === 0 ? perTenant : undefined;
      }).catch((err: Error) => { t.fail(err.message); return []; });
      t.ok(compacted.length > 0, `compacted index: ${compacted.join(', ')}`);
      // The querier keeps a local copy of the index; from a fresh start it
      // can only have the compacted one.
      await stack.stopProgram();
      await stack.startProgram(3);
      await queryAll(t, 'after compaction');
    });
  } catch (err) {
    t.fail((err as Error).message);
  }

  await t.test('every object sits in the shard the ring names, and streams use every shard', async (t) => {
    await checkPlacement(t, storage, stack.proxyConfig);

    const streamShards = storage.bucketsBy(CHUNK_KEY);
    const split = [...streamShards].filter(([, s]) => s.size !== 1).map(([fp, s]) => `${fp}: ${[...s]}`);
    t.same(split, [], `each of the ${streamShards.size} streams has all its chunks in one shard`);
    const tableShardsSeen = tables.map((tb) => [...new Set([...storage.seen].filter(([k]) => INDEX_KEY.exec(k)?.[1] === tb).flatMap(([, b]) => [...b]))].join('+'));
    t.same(tableShardsSeen, tableShards, `the two index tables sit whole in two shards (${tables.join(', ')})`);
    const perShard = SHARDS.map((s) => `${s}: ${[...streamShards.values()].filter((b) => b.has(s)).length}`);
    const used = new Set([...streamShards.values()].flatMap((s) => [...s]));
    t.equal(used.size, SHARDS.length, `streams spread over all shards (${perShard.join(', ')})`);
  });

  await t.test('no storage errors: Loki log, proxy log, S3 answers', async (t) => {
    const storageWords = /s3|storage|object|bucket|chunk|index|tsdb|shipper|compact|flush|NoSuch|minio/i;
    const lokiErrors = stack.programLogs.flatMap(readLines).filter((l) => /level=error/.test(l));
    const storageErrors = lokiErrors.filter((l) => storageWords.test(l));
    // Start-up and shutdown leave a few (an empty ring, cancelled scheduler streams).
    const otherErrors = lokiErrors.filter((l) => !storageWords.test(l));
    t.comment(`${otherErrors.length} other errors in Loki's log, e.g.:`);
    for (const l of otherErrors.slice(0, 3)) t.comment(`  ${l}`);
    for (const l of storageErrors.slice(0, 30)) t.comment(`Loki storage error: ${l}`);
    t.equal(storageErrors.length, 0, 'no storage errors in Loki\'s log');

    checkProxyLog(t, stack.proxyLog);

    const ops = new Map<string, number>();
    for (const x of stack.exchanges) {
      const k = `${callShape(x)} → ${x.status}`;
      ops.set(k, (ops.get(k) ?? 0) + 1);
    }
    t.comment(`S3 calls Loki made (${stack.exchanges.length}):`);
    for (const [k, n] of [...ops].sort()) t.comment(`  ${k} ×${n}`);
    await checkS3Answers(t, stack);
  });

  t.comment(`this run took ${Math.round((Date.now() - started) / 1000)} s`);
}
