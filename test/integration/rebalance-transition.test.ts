import t from 'tap';
import {
  GetObjectCommand, HeadObjectCommand, PutObjectCommand, DeleteObjectCommand, DeleteObjectsCommand, CopyObjectCommand,
  PutObjectTaggingCommand, GetObjectTaggingCommand, CreateMultipartUploadCommand, UploadPartCommand, UploadPartCopyCommand,
  ListPartsCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { startFaulty } from '../helpers/faulty';
import { BUCKET, FOUR, THREE, listAll, md5, r3, r4, sorted, stage, writeBlocks } from './rebalance-stack';

// After a shard is added and before a rebalance has moved anything: every
// operation finds each key where the earlier ring put it, writes go to the
// new owner, deletes reach every owner, uploads finish where they began.

const MiB = 1024 * 1024;

async function text(s3: S3Client, Key: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key }));
  return r.Body!.transformToString();
}
async function status(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? String(err);
  }
}

t.test('between a ring change and its rebalance', async (t) => {
  const st = await stage(t);
  const before = await st.proxy({ buckets: THREE });
  const after = await st.proxy({ buckets: FOUR, previous_rings: [THREE] });
  const blocks = Array.from({ length: 120 }, (_, i) => `tenant/block-${i}`);
  const moved = blocks.filter((b) => r3.locate(`${b}/x`) !== r4.locate(`${b}/x`));
  const stayed = blocks.filter((b) => !moved.includes(b));
  t.ok(moved.length >= 12, `${moved.length} of ${blocks.length} blocks change owner`);
  const written = new Map<string, string>();
  await writeBlocks(before.s3, blocks, written);

  await t.test('reads find every key where the earlier ring put it', async (t) => {
    for (const [key, sum] of written) {
      const r = await after.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
      t.equal(md5(Buffer.from(await r.Body!.transformToByteArray())), sum, key);
    }
    const key = `${moved[0]}/meta.json`;
    const head = await after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    t.equal(head.ETag, `"${written.get(key)}"`, 'HEAD too');
    const missing = `${moved[0]}/never-written`;
    const err = await after.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: missing })).catch((e) => e);
    t.equal(err.name, 'NoSuchKey', 'a key no owner has is NoSuchKey');
    t.equal(await status(after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: missing }))), 404);
  });

  await t.test('tagging and copy sources fall back too', async (t) => {
    const key = `${moved[0]}/data`;
    await after.s3.send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: key, Tagging: { TagSet: [{ Key: 'k', Value: 'v 1' }] } }));
    const tags = await after.s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }));
    t.same(tags.TagSet, [{ Key: 'k', Value: 'v 1' }]);
    const direct = await st.direct.send(new GetObjectTaggingCommand({ Bucket: r3.locate(key), Key: key }));
    t.same(direct.TagSet, [{ Key: 'k', Value: 'v 1' }], 'the tags are on the copy where it sits');

    const target = 'copies/of-moved/data';
    await after.s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: target, CopySource: `${BUCKET}/${key}` }));
    t.equal(md5(await text(after.s3, target)), written.get(key), 'copied from the earlier owner');
    const at = await st.contents(FOUR);
    t.ok(at.get(r4.locate(target))!.has(target), 'the copy is written at its current owner');
    written.set(target, written.get(key)!);
  });

  await t.test('a write after the change goes to the new owner and wins, in reads and listings', async (t) => {
    const key = `${moved[1]}/meta.json`;
    await after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'rewritten' }));
    const at = await st.contents(FOUR);
    t.equal(at.get(r4.locate(key))!.get(key), md5('rewritten'), 'the new copy at the current owner');
    t.notOk(at.get(r3.locate(key))!.has(key), 'the older one removed from the earlier owner');
    written.set(key, md5('rewritten'));
    t.equal(await text(after.s3, key), 'rewritten');
    // Two copies of a key, as a rebalance leaves them between its copy and
    // its delete, or a write straight to the shard.
    const twice = `${moved[8]}/meta.json`;
    await st.direct.send(new PutObjectCommand({ Bucket: r4.locate(twice), Key: twice, Body: 'at the owner' }));
    written.set(twice, md5('at the owner'));
    t.equal(await text(after.s3, twice), 'at the owner', 'the owner\'s copy is read');
    const one = await after.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: twice }));
    t.same(one.Contents?.map((o) => [o.Key, o.ETag, o.Size]), [[twice, `"${md5('at the owner')}"`, 'at the owner'.length]],
      'and listed, once');
    // Small pages put the two copies on page boundaries in every position.
    for (const maxKeys of [1000, 7, 2]) {
      const listed = await listAll(after.s3, maxKeys);
      t.same(listed.map((o) => o.key), sorted(written.keys()), `max-keys ${maxKeys}: each key once`);
      t.same(listed.filter((o) => written.get(o.key) !== o.etag), [], 'with the ETag reads return');
    }
  });

  // Loki writes with If-Match; a create-only write sends If-None-Match: *.
  await t.test('a conditional write sees the copy an earlier ring put', async (t) => {
    const key = `${moved[2]}/meta.json`;
    const put = (Body: string, cond: { IfMatch?: string; IfNoneMatch?: string }) =>
      status(after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body, ...cond })));
    t.equal(await put('create-only', { IfNoneMatch: '*' }), 412, 'create-only: the key exists at its earlier owner');
    t.equal(await put('stale', { IfMatch: '"0123456789abcdef0123456789abcdef"' }), 412, 'If-Match with another ETag');
    t.equal(await text(after.s3, key).then(md5), written.get(key), 'neither wrote');
    t.equal(await put('updated', { IfMatch: `"${written.get(key)}"` }), 'ok', 'If-Match with the ETag readers see');
    t.equal(await text(after.s3, key), 'updated');
    t.equal(await put('again', { IfMatch: `"${written.get(key)}"` }), 412, 'the current owner checks its own copy now');
    written.set(key, md5('updated'));
    const fresh = `${moved[2]}/never-written`;
    t.equal(await status(after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: fresh, Body: 'new', IfNoneMatch: '*' }))), 'ok',
      'create-only of a key no owner has');
    written.set(fresh, md5('new'));
  });

  await t.test('so does a conditional completion, wherever its upload began', async (t) => {
    const complete = async (Key: string, UploadId: string, ETag: string, cond: { IfMatch?: string; IfNoneMatch?: string }) =>
      status(after.s3.send(new CompleteMultipartUploadCommand({
        Bucket: BUCKET, Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] }, ...cond,
      })));
    const upload = async (s3: S3Client, Key: string, Body: string) => {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key }));
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key, UploadId, PartNumber: 1, Body }));
      return { UploadId: UploadId!, ETag: ETag! };
    };
    // Begun after the change, at the new owner; the key only at its earlier one.
    const key = `${moved[9]}/meta.json`;
    const a = await upload(after.s3, key, 'create-only');
    t.equal(await complete(key, a.UploadId, a.ETag, { IfNoneMatch: '*' }), 412, 'create-only: the key exists at its earlier owner');
    t.equal(await complete(key, a.UploadId, a.ETag, { IfMatch: `"${written.get(key)}"` }), 'ok', 'If-Match with the ETag readers see');
    t.equal(await text(after.s3, key), 'create-only');
    written.set(key, (await after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ETag!.replace(/"/g, ''));

    // Begun before the change, at the earlier owner; the key rewritten at the new one since.
    const late = `${moved[10]}/meta.json`;
    const b = await upload(before.s3, late, 'from an upload begun before');
    await after.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: late, Body: 'rewritten at the new owner' }));
    t.equal(await complete(late, b.UploadId, b.ETag, { IfMatch: `"${written.get(late)}"` }), 412,
      'If-Match with the ETag the earlier owner had');
    t.equal(await complete(late, b.UploadId, b.ETag, { IfMatch: `"${md5('rewritten at the new owner')}"` }), 'ok',
      'If-Match with the ETag readers see');
    t.equal(await text(after.s3, late), 'from an upload begun before', 'the completed upload is read');
    written.set(late, (await after.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: late }))).ETag!.replace(/"/g, ''));
  });

  await t.test('deletes reach every owner', async (t) => {
    const key = `${moved[1]}/meta.json`;
    await after.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    written.delete(key);
    const err = await after.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })).catch((e) => e);
    t.equal(err.name, 'NoSuchKey', 'not read back from the earlier owner');
    const batch = [`${moved[2]}/meta.json`, `${moved[2]}/data`, `${stayed[0]}/meta.json`];
    const r = await after.s3.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: batch.map((Key) => ({ Key })) } }));
    t.same(sorted(r.Deleted!.map((d) => d.Key!)), sorted(batch));
    t.same(r.Errors ?? [], []);
    for (const k of batch) written.delete(k);
    const at = await st.contents(FOUR);
    for (const k of [key, ...batch]) t.same(FOUR.filter((b) => at.get(b)!.has(k)), [], `${k} is on no shard`);
    t.same((await listAll(after.s3)).map((o) => o.key), sorted(written.keys()), 'nor listed');
  });

  await t.test('an upload begun before the change completes where it began', async (t) => {
    const key = `${moved[3]}/data.parquet`;
    const { UploadId } = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part1 = Buffer.alloc(5 * MiB, 1);
    const p1 = await before.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: part1 }));
    const p2 = await after.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: 'tail' }));
    const parts = await after.s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId }));
    t.same(parts.Parts?.map((p) => p.PartNumber), [1, 2], 'ListParts through the new ring');
    const uploads = await after.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    t.ok(uploads.Uploads?.some((u) => u.UploadId === UploadId), 'listed among the uploads');
    await after.s3.send(new CompleteMultipartUploadCommand({
      Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
    }));
    const at = await st.contents(FOUR);
    t.ok(at.get(r3.locate(key))!.has(key), 'completed on the shard it began on');
    t.equal(md5(Buffer.from(await (await after.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray())),
      md5(Buffer.concat([part1, Buffer.from('tail')])), 'and read back');
    written.set(key, at.get(r3.locate(key))!.get(key)!);

    const copyKey = `${moved[4]}/copied`;
    const source = `${moved[5]}/data`;
    const up2 = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: copyKey }));
    const pc = await after.s3.send(new UploadPartCopyCommand({
      Bucket: BUCKET, Key: copyKey, UploadId: up2.UploadId, PartNumber: 1, CopySource: `${BUCKET}/${source}`,
    }));
    await after.s3.send(new CompleteMultipartUploadCommand({
      Bucket: BUCKET, Key: copyKey, UploadId: up2.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: pc.CopyPartResult!.ETag }] },
    }));
    t.equal(md5(await text(after.s3, copyKey)), written.get(source), 'a part copied from an earlier owner into an earlier upload');
    const at2 = await st.contents(FOUR);
    written.set(copyKey, at2.get(r3.locate(copyKey))!.get(copyKey)!);

    const up3 = await before.s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${moved[6]}/aborted` }));
    await after.s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: `${moved[6]}/aborted`, UploadId: up3.UploadId }));
    const left = await after.s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    t.notOk(left.Uploads?.some((u) => u.UploadId === up3.UploadId), 'aborted where it began');
    const gone = await after.s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: 'no-such-upload', PartNumber: 1, Body: 'x' }))
      .catch((e) => e);
    t.equal(gone.name, 'NoSuchUpload', 'an upload no owner knows is NoSuchUpload');
  });

  await t.test('a failing current owner is a failure, never a fall-through to an earlier one', async (t) => {
    const relay = await startFaulty(st.minio.endpoint);
    t.teardown(() => relay.close());
    const failing = await st.proxy({
      shards: [...THREE.map((bucket) => ({ bucket })), { bucket: 'shard4', endpoint: relay.endpoint }],
      previous_rings: [THREE],
    }, { prepare: false });
    const key = `${moved[7]}/meta.json`;
    relay.set({ mode: 'pass' });
    t.equal(md5(await text(failing.s3, key)), written.get(key), 'read through the relay while it passes');
    relay.set({ mode: 'status', status: 503 });
    t.equal(await status(failing.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))), 503, 'GET: a 5xx stays a 5xx');
    t.equal(await status(failing.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))), 503, 'HEAD too');
    const healthyTarget = ['copies/a', 'copies/b', 'copies/c', 'copies/d'].find((k) => r4.locate(k) !== 'shard4')!;
    t.equal(await status(failing.s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: healthyTarget, CopySource: `${BUCKET}/${key}` }))),
      503, 'a copy source too');
    await relay.refuse();
    t.equal(await status(failing.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))), 503, 'a refused connection is a 503');
  });
});
