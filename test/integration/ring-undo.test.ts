import t from 'tap';
import { join } from 'node:path';
import {
  GetObjectCommand, HeadObjectCommand, PutObjectCommand, CopyObjectCommand, CreateMultipartUploadCommand, UploadPartCommand,
  CompleteMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { run } from '../helpers/run';
import { outcome } from '../helpers/outcome';
import { startFaulty } from '../helpers/faulty';
import { request } from 'undici';
import { BUCKET, FOUR, THREE, movingKeys, r3, r4, stage } from './rebalance-stack';

// A key written while a ring change waits for its rebalance leaves no older
// copy where the earlier ring put it. So the change can be undone before its
// rebalance has finished (the old ring back, the new one in previous_rings):
// every key reads as last written, and the rebalance that follows keeps the
// newest copies. And an upload begun before the change, completed where it
// began, wins over a copy written at the new owner meanwhile.

const BIN = join(__dirname, '..', '..', 'bin', 'tempo-s3-shard');
const MiB = 1024 * 1024;

async function text(s3: S3Client, Bucket: string, Key: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key }));
  return r.Body!.transformToString();
}

t.test('undo a ring change before its rebalance', async (t) => {
  const st = await stage(t);
  const three = await st.proxy({ buckets: THREE });
  const [put, copied, same, uploaded, retyped] = movingKeys('undo', 5, 'index.json.gz');
  for (const key of [put, copied, same, uploaded, retyped]) {
    await three.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `v1 of ${key}`, ContentType: 'text/v1' }));
  }
  // Begun before the change: it completes on the shard it began on.
  const { UploadId } = await three.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: uploaded }));
  const part1 = await three.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: uploaded, UploadId, PartNumber: 1, Body: Buffer.alloc(5 * MiB, 7) }));
  await three.stop();

  const four = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  await four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: put, Body: 'v2, written after the change' }));
  await four.s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: copied, CopySource: `${BUCKET}/${put}` }));
  await four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: same, Body: `v1 of ${same}`, ContentType: 'text/v1' }));
  await four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: retyped, Body: `v1 of ${retyped}`, ContentType: 'text/v2' }));
  await four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: uploaded, Body: 'v2, written at the new owner' }));
  await four.s3.send(new CompleteMultipartUploadCommand({
    Bucket: BUCKET, Key: uploaded, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part1.ETag }] },
  }));
  const latest = new Map([
    [put, 'v2, written after the change'], [copied, 'v2, written after the change'], [same, `v1 of ${same}`],
    [uploaded, Buffer.alloc(5 * MiB, 7).toString()],
  ]);
  t.equal(await text(four.s3, BUCKET, uploaded), latest.get(uploaded), 'the upload completed last is read, not the PUT before it');

  const at = await st.contents(FOUR);
  const holders = (key: string) => FOUR.filter((b) => at.get(b)!.has(key));
  t.same(holders(put), [r4.locate(put)], 'a PUT removed the older copy');
  t.same(holders(copied), [r4.locate(copied)], 'so did a copy');
  t.same(holders(same).sort(), [r3.locate(same), r4.locate(same)].sort(), 'an identical write left it: it is the same object');
  t.same(holders(retyped), [r4.locate(retyped)], 'the same bytes with another Content-Type removed it');
  t.same(holders(uploaded), [r3.locate(uploaded)], 'the completed upload removed the copy at the new owner');
  await four.stop();

  const undone = await st.proxy({ buckets: THREE, previous_rings: [FOUR] });
  for (const [key, body] of latest) t.equal(await text(undone.s3, BUCKET, key), body, `undone: ${key} reads as last written`);
  t.equal((await undone.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: retyped }))).ContentType, 'text/v2',
    'undone: the Content-Type last written');
  const moved = await run(process.execPath, [BIN, 'rebalance', '--config', undone.configFile]);
  t.equal(moved.status, 0, moved.stderr);
  const end = await st.contents(FOUR);
  for (const [key, body] of latest) {
    t.same(FOUR.filter((b) => end.get(b)!.has(key)), [r3.locate(key)], `rebalanced: ${key} once, at its owner`);
    t.equal(await text(st.direct, r3.locate(key), key), body, 'with the newest bytes');
  }
});

t.test('an earlier owner that fails the removal: the write stands, the failure is reported', async (t) => {
  const st = await stage(t);
  const three = await st.proxy({ buckets: THREE });
  const [key, uploaded] = movingKeys('undo', 2, 'index.json.gz');
  await three.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'v1' }));
  await three.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: uploaded, Body: 'v1' }));
  const relay = await startFaulty(st.minio.endpoint);
  t.teardown(() => relay.close());
  // The earlier shards behind a relay, the new one straight on MinIO.
  const four = await st.proxy({
    endpoint: relay.endpoint,
    shards: [...THREE.map((bucket) => ({ bucket })), { bucket: 'shard4', endpoint: st.minio.endpoint }],
    previous_rings: [THREE],
  });
  const { UploadId } = await four.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: uploaded }));
  const part = await four.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: uploaded, UploadId, PartNumber: 1, Body: 'v2' }));
  relay.set({ mode: 'status', status: 503 });
  // A client told otherwise could not complete its upload again, nor pass
  // the If-Match it retries with.
  t.equal(await outcome(four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'v2' }))), '200', 'a PUT is stored');
  t.equal(await outcome(four.s3.send(new CompleteMultipartUploadCommand({
    Bucket: BUCKET, Key: uploaded, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
  }))), '200', 'and so is an upload');
  relay.set({ mode: 'pass' });
  for (const k of [key, uploaded]) {
    t.equal(await text(four.s3, BUCKET, k), 'v2', `${k} reads as written`);
    t.equal(await outcome(st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(k), Key: k }))), '200', 'its older copy is still there');
  }
  const metrics = await (await request(`${four.endpoint}/metrics`)).body.text();
  const left = [...new Set([key, uploaded].map((k) => r3.locate(k)))]
    .map((shard) => Number(new RegExp(`^tempo_s3_shard_older_copies_left_total\\{shard="${shard}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0))
    .reduce((a, b) => a + b, 0);
  t.equal(left, 2, 'and counted in older_copies_left_total');
  t.equal(await outcome(four.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'v3' }))), '200');
  t.equal(await outcome(st.direct.send(new HeadObjectCommand({ Bucket: r3.locate(key), Key: key }))), '404 NotFound',
    'the next write, the shard answering again, removes it');
});
