import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { S3Client, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { loadConfig } from '../../lib/config';
import type { Config } from '../../lib/config';
import { ShardProxy } from '../../lib/server';
import { Ring } from '../../lib/ring';
import { Logger } from '../../lib/log';
import { MINIO_PASSWORD, MINIO_USER, startMinio } from '../helpers/minio';
import type { Minio } from '../helpers/minio';

// The rebalance tests' stage: one MinIO, and proxies started from configs
// that differ only in their rings, as an operator's would before and after
// adding a shard.

export const CREDENTIALS = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };
export const BUCKET = 'proxy-bucket';
/** The ring change the tests make: a fourth shard added to three. */
export const THREE = ['shard1', 'shard2', 'shard3'];
export const FOUR = [...THREE, 'shard4'];
export const r3 = new Ring(THREE);
export const r4 = new Ring(FOUR);

/** `n` keys `<prefix>/blk-<i>/<file>` that move from one of three shards to the fourth. */
export function movingKeys(prefix: string, n: number, file = 'data'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const key = `${prefix}/blk-${i}/${file}`;
    if (r3.locate(key) !== r4.locate(key)) out.push(key);
  }
  return out;
}

export interface Proxy {
  proxy: ShardProxy;
  config: Config;
  configFile: string;
  endpoint: string;
  s3: S3Client;
  stop(): Promise<void>;
}
export interface Stage {
  minio: Minio;
  direct: S3Client;
  /** Starts a proxy on `fields` (the rings) plus the MinIO settings. */
  proxy(fields: Record<string, unknown>, opts?: { prepare?: boolean }): Promise<Proxy>;
  /** Every key and its ETag in each bucket, read straight from MinIO. */
  contents(buckets: string[]): Promise<Map<string, Map<string, string>>>;
}

export async function stage(t: Test): Promise<Stage> {
  const minio = await startMinio();
  const dir = mkdtempSync(join(tmpdir(), 'tss-rebalance-'));
  const direct = client(minio.endpoint);
  const proxies: Proxy[] = [];
  t.teardown(async () => {
    for (const p of proxies) await p.stop();
    direct.destroy();
    await minio.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  return {
    minio,
    direct,
    async proxy(fields, opts = {}) {
      const configFile = join(dir, `config-${++n}.json`);
      writeFileSync(configFile, JSON.stringify({
        listen_addr: '127.0.0.1:0', endpoint: minio.endpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
        region: 'us-east-1', log_level: 'error', ...fields,
      }));
      const config = loadConfig({ file: configFile, env: {} });
      const proxy = new ShardProxy(config, new Logger('error'));
      if (opts.prepare ?? true) await proxy.ensureBuckets();
      const addr = await proxy.listen(0, '127.0.0.1');
      const endpoint = `http://127.0.0.1:${addr.port}`;
      const s3 = client(endpoint);
      let stopped: Promise<void> | undefined;
      const p = {
        proxy, config, configFile, endpoint, s3,
        stop: () => (stopped ??= (async () => {
          s3.destroy();
          await proxy.close(0);
        })()),
      };
      proxies.push(p);
      return p;
    },
    async contents(buckets) {
      const out = new Map<string, Map<string, string>>();
      for (const bucket of buckets) {
        const keys = new Map<string, string>();
        let token: string | undefined;
        do {
          const page = await direct.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
          for (const o of page.Contents ?? []) keys.set(o.Key!, o.ETag!.replace(/"/g, ''));
          token = page.NextContinuationToken;
        } while (token);
        out.set(bucket, keys);
      }
      return out;
    },
  };
}

// No retries: a failure the proxy answers must show.
export function client(endpoint: string): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
}

export const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

/** Two files per block, `<tenant>/<block>/meta.json` and `.../data`, with
 * their bodies' MD5s recorded in `written`. */
export async function writeBlocks(s3: S3Client, blocks: string[], written: Map<string, string>, concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < blocks.length) {
      const block = blocks[next++];
      for (const [file, body] of [['meta.json', `{"block":"${block}"}`], ['data', `${block}:`.repeat(1 + (block.length % 40))]]) {
        const Key = `${block}/${file}`;
        await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: body }));
        written.set(Key, md5(body));
      }
    }
  }));
}

/** Every key through the proxy's listing, page by page. */
export async function listAll(s3: S3Client, maxKeys = 1000): Promise<{ key: string; etag: string }[]> {
  const out: { key: string; etag: string }[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token, MaxKeys: maxKeys }));
    for (const o of page.Contents ?? []) out.push({ key: o.Key!, etag: o.ETag!.replace(/"/g, '') });
    token = page.NextContinuationToken;
  } while (token);
  return out;
}

/** Byte order, as S3 lists. */
export function sorted(keys: Iterable<string>): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** A writer adding blocks and readers checking random written keys, through
 * `s3`, until stopped. */
export function startLoad(s3: S3Client, written: Map<string, string>, readers = 3): { stop(): Promise<{ writes: number; reads: number; errors: string[] }> } {
  let stopping = false;
  let writes = 0;
  let reads = 0;
  const errors: string[] = [];
  const keys = [...written.keys()];
  const writer = (async () => {
    for (let i = 0; !stopping; i++) {
      const block = `load-tenant/${String(i).padStart(6, '0')}`;
      const fresh = new Map<string, string>();
      try {
        await writeBlocks(s3, [block], fresh, 1);
      } catch (err) {
        errors.push(`write ${block}: ${(err as Error).message}`);
      }
      for (const [k, v] of fresh) {
        written.set(k, v);
        keys.push(k);
        writes++;
      }
    }
  })();
  let seed = 12345;
  const pick = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return keys[seed % keys.length];
  };
  const reader = async () => {
    while (!stopping) {
      const key = pick();
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        const sum = md5(Buffer.from(await r.Body!.transformToByteArray()));
        if (sum !== written.get(key)) errors.push(`read ${key}: wrong bytes`);
        reads++;
      } catch (err) {
        errors.push(`read ${key}: ${(err as Error).name} ${(err as Error).message}`);
      }
    }
  };
  const all = Promise.all([writer, ...Array.from({ length: readers }, reader)]);
  return {
    async stop() {
      stopping = true;
      await all;
      return { writes, reads, errors };
    },
  };
}

/** Reads every given key through `s3` and returns the keys whose bytes differ. */
export async function readAll(s3: S3Client, written: Map<string, string>, concurrency = 16): Promise<string[]> {
  const keys = [...written.keys()];
  const bad: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < keys.length) {
      const key = keys[next++];
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        if (md5(Buffer.from(await r.Body!.transformToByteArray())) !== written.get(key)) bad.push(`${key}: wrong bytes`);
      } catch (err) {
        bad.push(`${key}: ${(err as Error).name}`);
      }
    }
  }));
  return bad;
}

/** Where each key is, straight from MinIO: keys on no shard, keys on more
 * than one, keys away from `owner`, and keys whose bytes differ. */
export function placementFaults(at: Map<string, Map<string, string>>, written: Map<string, string>, owner: (key: string) => string) {
  const where = new Map<string, string[]>();
  for (const [bucket, keys] of at) for (const k of keys.keys()) where.set(k, [...(where.get(k) ?? []), bucket]);
  return {
    lost: [...written.keys()].filter((k) => !where.has(k)),
    extra: [...where.keys()].filter((k) => !written.has(k)),
    duplicated: [...where].filter(([, b]) => b.length > 1).map(([k]) => k),
    misplaced: [...where].filter(([k, b]) => b.length === 1 && b[0] !== owner(k)).map(([k]) => k),
    wrongBytes: [...where].filter(([k, b]) => written.has(k) && at.get(b[0])!.get(k) !== written.get(k)).map(([k]) => k),
  };
}
