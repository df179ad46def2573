import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  S3Client, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand,
  GetObjectTaggingCommand, HeadBucketCommand, GetBucketLocationCommand, ListBucketsCommand,
} from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

async function failedStatus(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  }
  return undefined;
}

// @aws-sdk/client-s3 with its default checksums: buffered bodies carry a
// CRC32 header, streamed ones arrive aws-chunked with a CRC32 trailer.

t.test('aws-sdk-js v3 through the proxy', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  const Bucket = 'proxy-bucket';
  const ring = new Ring(stack.shards);

  await t.test('buffered PUT with metadata and tags, GET, HEAD', async (t) => {
    const Body = randomBytes(64 * 1024 + 1);
    const put = await s3.send(new PutObjectCommand({
      Bucket, Key: 'tenant/blockA/data.parquet', Body, ContentType: 'application/octet-stream',
      Metadata: { kind: 'parquet' }, Tagging: 'a=1&b=two',
    }));
    t.match(put.ETag, /^"[0-9a-f]{32}"$/, 'quoted ETag');
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockA/data.parquet' }));
    t.same(Buffer.from(await got.Body!.transformToByteArray()), Body);
    t.equal(got.Metadata?.kind, 'parquet');
    t.ok(got.LastModified instanceof Date);
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/blockA/data.parquet' }));
    t.equal(head.ContentLength, Body.length);
    t.equal(head.ETag, put.ETag);
    const tags = await s3.send(new GetObjectTaggingCommand({ Bucket, Key: 'tenant/blockA/data.parquet' }));
    t.same(tags.TagSet?.map((x) => `${x.Key}=${x.Value}`).sort(), ['a=1', 'b=two']);
  });

  await t.test('streamed PUT: aws-chunked with a CRC32 trailer', async (t) => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const Body = Readable.from((function* () { for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000); })());
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/blockB/stream.bin', Body, ContentLength: data.length }));
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockB/stream.bin' }));
    t.same(Buffer.from(await got.Body!.transformToByteArray()), data, 'stored the decoded payload, byte-exact');
    const contents = await stack.shardContents();
    t.ok(contents.get(ring.locate('tenant/blockB/stream.bin'))!.includes('tenant/blockB/stream.bin'), 'on its owner');
  });

  await t.test('ranges', async (t) => {
    const data = randomBytes(1000);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/blockC/r', Body: data }));
    const range = async (Range: string) => {
      const r = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockC/r', Range }));
      return { body: Buffer.from(await r.Body!.transformToByteArray()), contentRange: r.ContentRange };
    };
    t.same((await range('bytes=10-19')).body, data.subarray(10, 20));
    t.same((await range('bytes=990-')).body, data.subarray(990));
    t.same((await range('bytes=-5')).body, data.subarray(995));
    // Tempo asks for one byte past the end of its footer: S3 clamps.
    const clamped = await range('bytes=992-1000');
    t.same(clamped.body, data.subarray(992));
    t.equal(clamped.contentRange, 'bytes 992-999/1000');
    await t.rejects(range('bytes=1000-1010'), { name: 'InvalidRange' });
    t.equal(await failedStatus(range('bytes=1000-1010')), 416);
  });

  await t.test('absence is NoSuchKey; DELETE is 204 even for a missing key', async (t) => {
    await t.rejects(s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/nothing/here' })), { name: 'NoSuchKey' });
    t.equal(await failedStatus(s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/nothing/here' }))), 404);
    const del = await s3.send(new DeleteObjectCommand({ Bucket, Key: 'tenant/nothing/here' }));
    t.equal(del.$metadata.httpStatusCode, 204);
  });

  await t.test('conditional requests reach the backend', async (t) => {
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/blockD/meta.json', Body: '{}' }));
    t.equal(await failedStatus(s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/blockD/meta.json', Body: 'x', IfNoneMatch: '*' }))), 412);
    t.equal(await failedStatus(s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockD/meta.json', IfMatch: '"0000"' }))), 412);
    const ok = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockD/meta.json', IfMatch: put.ETag }));
    t.equal(await ok.Body!.transformToString(), '{}');
    t.equal(await failedStatus(s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/blockD/meta.json', IfNoneMatch: put.ETag }))), 304);
  });

  await t.test('bucket-level answers', async (t) => {
    const buckets = await s3.send(new ListBucketsCommand({}));
    t.same(buckets.Buckets?.map((b) => b.Name), ['proxy-bucket']);
    const loc = await s3.send(new GetBucketLocationCommand({ Bucket }));
    t.notOk(loc.LocationConstraint, 'us-east-1 is the empty constraint');
    const head = await s3.send(new HeadBucketCommand({ Bucket }));
    t.equal(head.$metadata.httpStatusCode, 200);
    t.equal(await failedStatus(s3.send(new HeadBucketCommand({ Bucket: 'shard1' }))), 404);
    await t.rejects(s3.send(new GetObjectCommand({ Bucket: 'other', Key: 'x' })), { name: 'NoSuchBucket' });
  });
});
