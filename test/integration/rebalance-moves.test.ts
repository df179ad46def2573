import t from 'tap';
import type { Test } from 'tap';
import { createServer, request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand, GetObjectTaggingCommand, CreateMultipartUploadCommand,
  UploadPartCommand, CompleteMultipartUploadCommand, ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';
import type { HeadObjectCommandOutput, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../lib/config';
import { Pools } from '../../lib/backend';
import { VirtualBucket } from '../../lib/virtual-bucket';
import { rebalance } from '../../lib/rebalance';
import { MINIO_PASSWORD, MINIO_USER } from '../helpers/minio';
import { outcome } from '../helpers/outcome';
import { BUCKET, FOUR, THREE, md5, movingKeys, r3, stage } from './rebalance-stack';
import type { Proxy, Stage } from './rebalance-stack';

// How `rebalance` moves one object to the shard that now owns it: the object
// keeps its bytes, ETag, metadata, tags and checksum; and a client's write of
// the same key while the move is under way is never overwritten, nor taken
// for a delete, nor deleted as the older copy. The first cases run twice:
// the shards on one endpoint (the backend copies) and the new shard on
// another (the bytes are streamed through).

const MiB = 1024 * 1024;

/** An HTTP relay in front of MinIO that calls `before` with each request
 * (its body not yet read) and forwards it once that has settled; `answered`,
 * if given, is called with MinIO's answer (read whole) before it is passed
 * on, and may give a status to answer instead. */
async function relay(target: string, before: Before, answered?: Answered): Promise<{ endpoint: string; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const server = createServer(async (req, res) => {
    await before(req);
    const up = request({ host: hostname, port, method: req.method, path: req.url, headers: req.headers }, async (answer) => {
      if (!answered) {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
        return;
      }
      const body = Buffer.concat(await answer.toArray());
      const instead = await answered(req, answer.statusCode!);
      if (instead) {
        res.writeHead(instead, { 'content-length': '0' });
        res.end();
        return;
      }
      res.writeHead(answer.statusCode!, answer.headers);
      res.end(body);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

type Before = (req: IncomingMessage) => Promise<void>;
type Answered = (req: IncomingMessage, status: number) => Promise<number | void>;

/** The virtual bucket `rebalance` works on: four shards, the fourth (and,
 * with `oneEndpoint`, all of them) reached through a relay in front of the
 * stage's MinIO, with the relay's hooks. */
async function rebalancing(t: Test, st: Stage, oneEndpoint: boolean, before: Before = async () => {},
  answered?: Answered): Promise<VirtualBucket> {
  const through = await relay(st.minio.endpoint, before, answered);
  t.teardown(() => through.close());
  const pools = new Pools();
  t.teardown(() => pools.close());
  const dir = mkdtempSync(join(tmpdir(), 'tss-moves-'));
  const file = join(dir, 'rebalance.json');
  writeFileSync(file, JSON.stringify({
    endpoint: oneEndpoint ? through.endpoint : st.minio.endpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
    region: 'us-east-1', shards: [...THREE.map((bucket) => ({ bucket })), { bucket: 'shard4', endpoint: through.endpoint }],
    previous_rings: [THREE],
  }));
  const config = loadConfig({ file, env: {} });
  rmSync(dir, { recursive: true });
  return new VirtualBucket(config.virtualBuckets[0], pools);
}

async function multipartPut(s3: S3Client, Key: string, parts: Buffer[], extra: { Metadata?: Record<string, string>; ContentType?: string; Tagging?: string } = {}): Promise<void> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key, ...extra }));
  const done = [];
  for (const [i, Body] of parts.entries()) {
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key, UploadId, PartNumber: i + 1, Body }));
    done.push({ PartNumber: i + 1, ETag: r.ETag });
  }
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key, UploadId, MultipartUpload: { Parts: done } }));
}

async function read(s3: S3Client, Bucket: string, Key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

const UPLOADED = 'written by an upload begun before the ring change';

/** A key written before the ring change, with an upload of it begun then
 * too; `complete()` finishes the upload through the proxy on the new ring. */
async function lateUpload(st: Stage, prefix: string): Promise<{ key: string; after: Proxy; complete(): Promise<void> }> {
  const before = await st.proxy({ buckets: THREE });
  const [key] = movingKeys(prefix, 1);
  await before.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'written before the ring change' }));
  const { UploadId } = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  const part = await before.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: UPLOADED }));
  await before.stop();
  const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  return {
    key,
    after,
    async complete() {
      await after.s3.send(new CompleteMultipartUploadCommand({
        Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }));
    },
  };
}

for (const oneEndpoint of [true, false]) {
  const where = oneEndpoint ? 'shards on one endpoint' : 'the new shard on another endpoint';

  t.test(`${where}: a moved object keeps what it was written with`, async (t) => {
    const st = await stage(t);
    const before = await st.proxy({ buckets: THREE });
    const [plainKey, partsKey] = movingKeys('attrs', 2);
    const plain = randomBytes(100_000);
    await before.s3.send(new PutObjectCommand({
      Bucket: BUCKET, Key: plainKey, Body: plain, ContentType: 'application/x-tempo', Metadata: { tenant: 'a b' },
      Tagging: 'kind=bloom&n=1', ChecksumAlgorithm: 'CRC32C', CacheControl: 'max-age=60',
    }));
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1234)];
    await multipartPut(before.s3, partsKey, parts, { ContentType: 'application/x-parquet', Metadata: { v: '2' }, Tagging: 'kind=data' });
    const original = new Map<string, { head: HeadObjectCommandOutput; tags: unknown }>();
    for (const Key of [plainKey, partsKey]) {
      const head = await st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(Key), Key, ChecksumMode: 'ENABLED' }));
      const tags = (await st.direct.send(new GetObjectTaggingCommand({ Bucket: r3.locate(Key), Key }))).TagSet;
      original.set(Key, { head, tags });
    }
    t.match(original.get(partsKey)!.head.ETag, /-3"$/, 'the second object has a multipart ETag');
    t.ok(original.get(plainKey)!.head.ChecksumCRC32C, 'and the first a CRC32C');
    await before.stop();
    await st.proxy({ buckets: FOUR, previous_rings: [THREE] });

    const report = await rebalance(await rebalancing(t, st, oneEndpoint));
    t.same(report.failures, [], 'no failures');
    t.equal(report.total.objects, 2);
    t.equal([...report.routes.values()].reduce((a, r) => a + r.objects, 0), 2, 'both moved');

    for (const [Key, body] of [[plainKey, plain], [partsKey, Buffer.concat(parts)]] as const) {
      const was = original.get(Key)!;
      const head = await st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key, ChecksumMode: 'ENABLED' }));
      t.equal(head.ETag, was.head.ETag, `${Key}: the same ETag`);
      t.equal(head.ContentType, was.head.ContentType, `${Key}: the same Content-Type`);
      t.same(head.Metadata, was.head.Metadata, `${Key}: the same metadata`);
      t.equal(head.CacheControl, was.head.CacheControl, `${Key}: the same Cache-Control`);
      t.same((await st.direct.send(new GetObjectTaggingCommand({ Bucket: 'shard4', Key }))).TagSet, was.tags, `${Key}: the same tags`);
      t.equal(md5(await read(st.direct, 'shard4', Key)), md5(body), `${Key}: the same bytes`);
      await t.rejects(st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(Key), Key })), { name: 'NotFound' }, `${Key}: gone from ${r3.locate(Key)}`);
    }
    const head = await st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key: plainKey, ChecksumMode: 'ENABLED' }));
    t.equal(head.ChecksumCRC32C, original.get(plainKey)!.head.ChecksumCRC32C, 'the plain object keeps its checksum');
    t.equal((await st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key: partsKey, PartNumber: 3 }))).ContentLength, 1234,
      'the parts keep their sizes');
  });

  t.test(`${where}: a client's write during the move wins`, async (t) => {
    const st = await stage(t);
    const before = await st.proxy({ buckets: THREE });
    const [plainKey, partsKey] = movingKeys('race', 2);
    await before.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: plainKey, Body: 'old, written before the ring change' }));
    await multipartPut(before.s3, partsKey, [randomBytes(5 * MiB), Buffer.from('old tail')]);
    await before.stop();
    const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });

    // The moment a move stores the object at the owner (the PUT, or the
    // upload's completion), a client writes the key through the proxy first.
    const newer = new Map([[plainKey, 'newer, written by a client during the move'], [partsKey, 'newer, over the multipart one']]);
    const raced: string[] = [];
    const vb = await rebalancing(t, st, oneEndpoint, async (req) => {
      const url = new URL(req.url!, 'http://x');
      const key = decodeURIComponent(url.pathname.replace(/^\/shard4\//, ''));
      const storing = (req.method === 'PUT' && !url.search && !req.headers['x-amz-copy-source']) ||
        (req.method === 'POST' && url.searchParams.has('uploadId'));
      if (!storing || !newer.has(key) || raced.includes(key)) return;
      raced.push(key);
      await after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: newer.get(key) }));
    });
    const report = await rebalance(vb);
    t.same(raced.sort(), [plainKey, partsKey].sort(), 'both moves met a client write');
    t.same(report.failures, [], 'no failures');

    for (const [key, body] of newer) {
      t.equal((await read(after.s3, BUCKET, key)).toString(), body, `${key}: the client reads its own write`);
      t.equal((await read(st.direct, 'shard4', key)).toString(), body, `${key}: which the owner holds`);
      await t.rejects(st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(key), Key: key })), { name: 'NotFound' },
        `${key}: the older copy is gone`);
    }
    t.same(await st.contents(['shard4']).then((c) => [...c.get('shard4')!.keys()].sort()), [plainKey, partsKey].sort(),
      'no stray copy is left behind');
    t.same((await st.direct.send(new ListMultipartUploadsCommand({ Bucket: 'shard4' }))).Uploads ?? [], [],
      'nor the upload that lost to the client');
  });

  t.test(`${where}: objects with empty parts move`, async (t) => {
    const st = await stage(t);
    const before = await st.proxy({ buckets: THREE });
    const [empty, emptyLast] = movingKeys('empty-parts', 2);
    const cases = new Map([[empty, [Buffer.alloc(0)]], [emptyLast, [randomBytes(5 * MiB), Buffer.alloc(0)]]]);
    for (const [key, parts] of cases) await multipartPut(before.s3, key, parts, { ContentType: 'application/x-empty' });
    await before.stop();
    await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
    const report = await rebalance(await rebalancing(t, st, oneEndpoint));
    t.same(report.failures, [], 'no failures');
    for (const [key, parts] of cases) {
      const head = await st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key: key }));
      t.match(head.ETag, new RegExp(`-${parts.length}"$`), `${key}: at its owner, in ${parts.length} parts`);
      t.equal(head.ContentType, 'application/x-empty', `${key}: with its Content-Type`);
      t.equal(md5(await read(st.direct, 'shard4', key)), md5(Buffer.concat(parts)), `${key}: and its bytes`);
    }
  });
}

// A client's write during a transition removes an older copy at an earlier
// owner (forward.ts): when that write lands just after a move, the source
// that vanished must not be taken for the client's delete.
t.test('a write right after a move is not taken for a delete', async (t) => {
  const st = await stage(t);
  const before = await st.proxy({ buckets: THREE });
  const [key] = movingKeys('after-move', 1);
  await before.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'old' }));
  await before.stop();
  const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  let stored = false;
  let wrote = false;
  const vb = await rebalancing(t, st, true, async (req) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    if (req.method === 'PUT' && path === `/shard4/${key}`) stored = true;
    // Rebalance's look at the source after storing the copy.
    if (stored && !wrote && req.method === 'HEAD' && path === `/${r3.locate(key)}/${key}`) {
      wrote = true;
      await after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'newer' }));
    }
  });
  const report = await rebalance(vb);
  t.ok(wrote, 'the client wrote right after the move');
  t.same(report.failures, []);
  t.equal((await read(after.s3, BUCKET, key)).toString(), 'newer', 'the client reads its write');
});

// An upload begun before the ring change completes where it began while
// rebalance works on its key: as rebalance is about to delete the copy it
// listed there (the owner having one already), or to store the older object
// at the owner. The newer object is neither deleted nor hidden, the run says
// to run again, and the next run moves it.
const LATE = [
  { moment: 'as its listed copy is about to be deleted', atOwner: true, reason: /the copy on shard\d changed while it was being moved/,
    at: (req: IncomingMessage, key: string) => req.method === 'HEAD' && decodeURIComponent(req.url!) === `/${r3.locate(key)}/${key}` },
  { moment: 'as the older object is moved', atOwner: false, reason: /the source changed while it was being moved/,
    at: (req: IncomingMessage, key: string) => req.method === 'PUT' && decodeURIComponent(req.url!) === `/shard4/${key}` },
];
for (const late of LATE) {
  t.test(`an upload completed where it began ${late.moment}`, async (t) => {
    const st = await stage(t);
    const { key, after, complete } = await lateUpload(st, `late-${late.atOwner}`);
    // As a write straight to the shard leaves it.
    if (late.atOwner) await st.direct.send(new PutObjectCommand({ Bucket: 'shard4', Key: key, Body: 'at the owner' }));
    let completed = false;
    const vb = await rebalancing(t, st, true, async (req) => {
      if (completed || !late.at(req, key)) return;
      completed = true;
      await complete();
    });
    const first = await rebalance(vb);
    t.ok(completed, 'the upload completed while rebalance ran');
    t.match(first.failures, [{ key, reason: late.reason }], 'the first run says to run again');
    t.equal((await read(after.s3, BUCKET, key)).toString(), UPLOADED, 'the upload is read');
    const second = await rebalance(vb);
    t.same(second.failures, [], 'the second run moves it');
    t.equal((await read(st.direct, 'shard4', key)).toString(), UPLOADED, 'to its owner');
    t.equal(await outcome(st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(key), Key: key }))), '404 NotFound', 'once');
  });
}

// An upload begun before the ring change, of the same parts as the object
// then written (so with its ETag) but another Content-Type, completes where
// it began while rebalance works on the key: as rebalance is about to delete
// the copy it listed there (the key moved by this run, or at its owner
// already), or as it checks the copy it moved. The completed upload is kept.
for (const moment of ['as the moved key\'s listed copy is about to be deleted', 'as the key at its owner has its listed copy deleted',
  'as the moved copy is checked'] as const) {
  t.test(`an upload of the same bytes with another Content-Type, completed ${moment}`, async (t) => {
    const st = await stage(t);
    const before = await st.proxy({ buckets: THREE });
    const [key] = movingKeys(`same-bytes-${moment.length}`, 1);
    const parts = [randomBytes(5 * MiB), Buffer.from('tail')];
    await multipartPut(before.s3, key, parts, { ContentType: 'text/old' });
    const { UploadId } = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ContentType: 'text/new' }));
    const done: { PartNumber: number; ETag?: string }[] = [];
    for (const [i, Body] of parts.entries()) {
      const r = await before.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body }));
      done.push({ PartNumber: i + 1, ETag: r.ETag });
    }
    await before.stop();
    const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
    const atOwner = moment.includes('at its owner');
    // As a straight write to the shard, or an earlier run stopped before its deletes, leaves it.
    if (atOwner) await multipartPut(after.s3, key, parts, { ContentType: 'text/old' });
    // Moved by this run: its first look at the source after the copy is stored is settle()'s, the next the delete loop's.
    let looks = 0;
    let completed = false;
    const vb = await rebalancing(t, st, true, async (req) => {
      if (completed || req.method !== 'HEAD' || decodeURIComponent(req.url!) !== `/${r3.locate(key)}/${key}`) return;
      if (!atOwner && (await outcome(st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key: key }))) !== '200' ||
        ++looks < (moment.includes('checked') ? 1 : 2))) return;
      completed = true;
      await after.s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: done } }));
    });
    const first = await rebalance(vb);
    t.ok(completed, 'the client completed its upload while rebalance ran');
    t.match(first.failures, [{ key, reason: /changed while it was being moved: run rebalance again/ }], 'the run says to run again');
    t.equal(first.vanished, 0, 'and takes nothing for a client\'s delete');
    t.equal((await after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ContentType, 'text/new', 'the upload is read');
    t.same((await rebalance(vb)).failures, [], 'the next run moves it');
    t.equal((await st.direct.send(new HeadObjectCommand({ Bucket: 'shard4', Key: key }))).ContentType, 'text/new', 'to its owner');
  });
}

// A run stopped (Ctrl-C, or a shard failing a look) between storing a copy at
// the owner and checking it, while a client completed an upload begun before
// the change, or deleted the key: the copy is checked or withdrawn all the
// same, never left to pass, on the next run, for the one that wins.
for (const stop of ['stopped', 'failing a look at the source', 'failing a look at the owner'] as const) {
  for (const client of ['completes an upload', 'deletes'] as const) {
    t.test(`a run ${stop} right after storing a copy, while a client ${client}`, async (t) => {
      const st = await stage(t);
      const { key, after, complete } = await lateUpload(st, `unchecked-${stop.length}-${client.length}`);
      const controller = new AbortController();
      const path = (req: IncomingMessage) => decodeURIComponent(req.url!);
      let acted = false;
      let failed = false;
      const vb = await rebalancing(t, st, true, async (req) => {
        // The move has read the source and is about to store its copy.
        if (acted || req.method !== 'PUT' || path(req) !== `/shard4/${key}`) return;
        acted = true;
        if (client === 'deletes') await after.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
        else await complete();
      }, async (req, status) => {
        // The copy is stored: the run stops before it hears so.
        if (stop === 'stopped' && req.method === 'PUT' && path(req) === `/shard4/${key}` && status === 200) controller.abort();
        const looked = stop === 'failing a look at the source' ? `/${r3.locate(key)}/${key}` : `/shard4/${key}`;
        if (stop !== 'stopped' && acted && !failed && req.method === 'HEAD' && path(req) === looked) {
          failed = true;
          return 503;
        }
      });
      const first = await rebalance(vb, { signal: controller.signal });
      t.ok(acted && (first.interrupted || failed), 'the client acted, and the first run stopped');
      const second = await rebalance(vb);
      t.same(second.failures, [], 'a second run finishes');
      if (client === 'deletes') {
        t.equal(await outcome(after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))), '404 NotFound', 'the deleted key stays deleted');
      } else {
        t.equal((await read(after.s3, BUCKET, key)).toString(), UPLOADED, 'the upload completed during the move is read');
      }
    });
  }
}

t.test('a multipart move stopped as its upload begins leaves no upload open', async (t) => {
  const st = await stage(t);
  const before = await st.proxy({ buckets: THREE });
  const [key] = movingKeys('stopped-upload', 1);
  await multipartPut(before.s3, key, [randomBytes(5 * MiB), Buffer.from('tail')]);
  await before.stop();
  await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  const controller = new AbortController();
  const vb = await rebalancing(t, st, true, async () => {}, async (req) => {
    if (req.method === 'POST' && req.url!.endsWith('?uploads=')) controller.abort();
  });
  const report = await rebalance(vb, { signal: controller.signal });
  t.ok(report.interrupted, 'stopped');
  t.same((await st.direct.send(new ListMultipartUploadsCommand({ Bucket: 'shard4' }))).Uploads ?? [], [], 'no upload left open');
});
