import t from 'tap';
import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import type { Test } from 'tap';
import { ROOT, SHARDS, ShardListing, buildProgram, checkPlacement, checkProxyLog, checkS3Answers, readLines, sleep, startStack, waitFor } from './common';
import { run } from '../helpers/run';
import { Balanced } from '../../lib/ring';

// Grafana Tempo, built from source, storing its blocks through the proxy
// (a child process, as deployed) into three shard buckets on MinIO: traces
// go in over OTLP, blocks are flushed, Tempo restarts with an empty WAL and
// must find every trace in object storage; each block must sit whole in the
// shard the ring names, blocks must spread over all shards, and compaction
// must mark and later clear its inputs. Then a fourth shard is added, as an
// operator does (with balanced placement, which moves most blocks): Tempo
// must read every trace through the ring change, and `rebalance`, run while
// Tempo writes, compacts and deletes, must move blocks and leave every block
// whole at its owner on the new ring.

const TENANT = 'single-tenant';
const SERVICE = 'e2e';
const TRACES_PER_BATCH = 5;
const FOUR = [...SHARDS, 'shard4'];
// Balanced placement over the four moves most blocks, not about a quarter.
const BALANCED_FOUR = new Balanced(FOUR.map((bucket) => ({ bucket, weight: 1 })));
// 12 blocks miss one of three shards with probability 3·(2/3)^12 ≈ 2 %;
// batches go on (up to MAX_BATCHES) until every shard holds a block.
const MIN_BATCHES = 12;
const MAX_BATCHES = 30;
// A little longer than the ingester's max_block_duration, so that each batch
// tends to land in a block of its own.
const BATCH_INTERVAL_MS = 6_000;
const TEMPO_KEY = { accessKeyId: 'tempo-e2e', secretAccessKey: 'tempo-e2e-secret-key' };
const BLOCK_KEY = new RegExp(`^${TENANT}/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(.+)$`);

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

/** Asks Tempo for every trace sent, by ID, until all are found (2 minutes at most). */
async function findAllById(t: Test, tempoApi: (path: string) => Promise<Response>, sent: SentTrace[]): Promise<void> {
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
}

/** Sends batches of traces over OTLP, `BATCH_INTERVAL_MS` apart, each
 * followed by `enough()`, until at least `min` are sent and it holds (or
 * `max` are sent). */
async function sendBatches(port: number, runId: string, sent: SentTrace[], first: number, min: number, max: number,
  enough: () => Promise<boolean>): Promise<number> {
  let batch = first;
  let done = false;
  while (batch < first + min || (!done && batch < first + max)) {
    const traces = Array.from({ length: TRACES_PER_BATCH }, () => ({ id: hex(16), spans: 1 + Math.floor(Math.random() * 4) }));
    await postOtlp(port, otlpBatch(runId, batch, traces));
    sent.push(...traces);
    batch++;
    await sleep(BATCH_INTERVAL_MS);
    done = await enough();
  }
  return batch;
}

// ---- what is in the shard buckets, seen straight on MinIO

interface BlockMeta { blockID: string; compactionLevel?: number; totalObjects?: number }

class Storage extends ShardListing {
  /** blocks written by the ingester (compaction level 0), with their trace counts */
  readonly ingesterBlocks = new Map<string, number>();
  readonly compactedBlocks = new Set<string>();
  readonly allBlocks = new Set<string>();
  private readonly metaRead = new Set<string>();

  protected override async noteKey(bucket: string, k: string): Promise<void> {
    const m = BLOCK_KEY.exec(k);
    if (!m) return;
    this.allBlocks.add(m[1]);
    if (m[2] === 'meta.compacted.json') this.compactedBlocks.add(m[1]);
    // Compaction may move meta.json to meta.compacted.json between two
    // looks; both hold the block's level and trace count.
    if ((m[2] === 'meta.json' || m[2] === 'meta.compacted.json') && !this.metaRead.has(m[1])) {
      const meta = await this.readMeta(bucket, k);
      if (!meta) return;
      this.metaRead.add(m[1]);
      if ((meta.compactionLevel ?? 0) === 0) this.ingesterBlocks.set(m[1], meta.totalObjects ?? 0);
    }
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

/** Waits (2 minutes at most) until the blocks the ingester flushed hold
 * `traces` traces; the count they hold. */
function waitForFlush(storage: Storage, traces: number): Promise<number> {
  return waitFor('every trace in a flushed block', 120_000, async () => {
    await storage.snapshot();
    const n = storage.tracesInIngesterBlocks();
    return n >= traces ? n : undefined;
  });
}

// ---- the run

t.test('Grafana Tempo on tempo-s3-shard', async (t) => {
  const started = Date.now();

  const { bin, version } = await buildProgram('build-tempo.sh');
  t.comment(version);

  const stack = await startStack(t, {
    name: 'Tempo', bin, key: TEMPO_KEY, virtualBucket: 'proxy-bucket',
    ports: ['TEMPO_HTTP_PORT', 'TEMPO_GRPC_PORT', 'TEMPO_OTLP_HTTP_PORT', 'TEMPO_MEMBERLIST_PORT'],
    readyMs: 120_000, graceMs: 15_000,
  });
  const { ports } = stack;
  const storage = new Storage(stack.s3);
  const tempoApi = (path: string) => fetch(`http://127.0.0.1:${ports.TEMPO_HTTP_PORT}${path}`);

  const runId = hex(6);
  const sent: SentTrace[] = [];
  let batches = 0;
  const since = Math.floor(Date.now() / 1000) - 60;

  try {
    await stack.startProgram(1);

    await t.test('traces go in over OTLP and are flushed as blocks into the shards', async (t) => {
      batches = await sendBatches(ports.TEMPO_OTLP_HTTP_PORT, runId, sent, 0, MIN_BATCHES, MAX_BATCHES, async () => {
        await storage.snapshot();
        return storage.shardsWithBlocks().size === SHARDS.length;
      });
      t.comment(`${sent.length} traces in ${batches} batches`);
      const flushed = await waitForFlush(storage, sent.length).catch((err: Error) => { t.fail(err.message); return storage.tracesInIngesterBlocks(); });
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
      await stack.stopProgram();
      await stack.startProgram(2);

      await findAllById(t, tempoApi, sent);

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
    await checkPlacement(t, storage, stack.proxyConfig);

    const blockShards = storage.bucketsBy(BLOCK_KEY);
    const split = [...blockShards].filter(([, s]) => s.size !== 1).map(([b, s]) => `${b}: ${[...s]}`);
    t.same(split, [], `each of the ${blockShards.size} blocks has all its files in one shard`);
    const perShard = SHARDS.map((s) => `${s}: ${[...blockShards.values()].filter((b) => b.has(s)).length}`);
    t.equal(storage.shardsWithBlocks().size, SHARDS.length, `blocks spread over all shards (${perShard.join(', ')})`);
  });

  // As an operator adds a shard: the proxy restarted on four shards with the
  // three in previous_rings, and `rebalance` run while Tempo writes,
  // compacts and deletes.
  await t.test('a fourth shard: Tempo reads through the ring change, and rebalance moves its blocks', async (t) => {
    try {
      // Compaction soon leaves few blocks: more go in, flushed before Tempo
      // stops (it restarts with an empty WAL), until one sits where the new
      // ring does not put it, so that there is something to move.
      for (let round = 0; round < 5; round++) {
        batches = await sendBatches(ports.TEMPO_OTLP_HTTP_PORT, runId, sent, batches, 1, 1, async () => true);
        await waitForFlush(storage, sent.length);
        const snap = await storage.snapshot();
        if ([...snap].some(([bucket, keys]) => keys.some((k) => BLOCK_KEY.test(k) && BALANCED_FOUR.locate(k) !== bucket))) break;
      }
      await stack.stopProgram();
      await stack.changeRing({ placement: 'balanced', buckets: FOUR });
      const rebalanceCommand = async () => {
        const r = await run(process.execPath, [join(ROOT, 'bin', 'tempo-s3-shard'), 'rebalance', '--config', stack.proxyConfig]);
        const done = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { moved_objects?: number };
        t.comment(`rebalance: exit ${r.status}; ${r.stdout.trim().split('\n').pop()}${r.stderr ? `; ${r.stderr.trim()}` : ''}`);
        return { status: r.status, moved: done.moved_objects ?? 0 };
      };
      // The first run moves the blocks while Tempo starts again and reads
      // them; Tempo compacts them into new blocks soon after, which leaves
      // later runs little to move.
      const first = rebalanceCommand();
      await stack.startProgram(3);
      let last = await first;
      let moved = last.moved;
      await findAllById(t, tempoApi, sent);

      // Tempo writes new blocks, compacts and deletes while rebalance runs
      // again. Compaction may change a block while it is moved: a run that
      // says so is run again.
      const before = sent.length;
      const writing = sendBatches(ports.TEMPO_OTLP_HTTP_PORT, runId, sent, batches, 4, 4, async () => true);
      for (let i = 0; i < 3 && (i === 0 || last.status !== 0); i++) {
        last = await rebalanceCommand();
        moved += last.moved;
      }
      batches = await writing;
      t.comment(`${sent.length - before} more traces sent on the new ring`);
      t.equal(last.status, 0, 'rebalance finishes');
      t.ok(moved > 0, `it moved ${moved} of Tempo's objects`);
      await findAllById(t, tempoApi, sent);

      const now = new ShardListing(stack.s3);
      now.shards = FOUR;
      await checkPlacement(t, now, stack.proxyConfig);
      const blockShards = now.bucketsBy(BLOCK_KEY);
      const split = [...blockShards].filter(([, b]) => b.size !== 1).map(([b, sh]) => `${b}: ${[...sh]}`);
      t.same(split, [], `each of the ${blockShards.size} blocks has all its files in one shard, of four`);
    } catch (err) {
      t.fail((err as Error).message);
    }
  });

  await t.test('no storage errors: Tempo log, proxy log, S3 answers', async (t) => {
    const storageWords = /s3|storage|backend|bucket|block|poll|compact|flush|retention|NoSuch|minio/i;
    const tempoErrors = stack.programLogs.flatMap(readLines).filter((l) => /level=error/.test(l));
    const storageErrors = tempoErrors.filter((l) => storageWords.test(l));
    for (const l of tempoErrors.filter((l) => !storageWords.test(l)).slice(0, 20)) t.comment(`other Tempo error: ${l}`);
    t.same(storageErrors.slice(0, 30), [], `no storage errors in Tempo's log (${storageErrors.length})`);

    checkProxyLog(t, stack.proxyLog);

    const ops = new Map<string, number>();
    for (const x of stack.exchanges) {
      const q = x.url.includes('?') ? x.url.slice(x.url.indexOf('?') + 1).split('&').map((p) => p.split('=')[0]).sort().join(',') : '';
      const k = `${x.method}${q ? ' ?' + q : ''} ${x.status}`;
      ops.set(k, (ops.get(k) ?? 0) + 1);
    }
    t.comment(`S3 calls Tempo made: ${[...ops].sort().map(([k, n]) => `${k} ×${n}`).join('; ')}`);
    await checkS3Answers(t, stack);
  });

  t.comment(`e2e took ${Math.round((Date.now() - started) / 1000)} s`);
});
