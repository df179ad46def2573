import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  S3Client, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand,
  GetObjectTaggingCommand, HeadBucketCommand, GetBucketLocationCommand, ListBucketsCommand,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import { createChecksum } from '../../lib/checksums';
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

  await t.test('a streamed PUT keeps its trailing checksum', async (t) => {
    const data = randomBytes(200_001);
    for (const alg of ['CRC32', 'SHA256'] as const) {
      const Key = `tenant/blockT/${alg}`;
      const sum = createChecksum(alg.toLowerCase() as 'crc32' | 'sha256');
      sum.update(data);
      const expected = sum.digestBase64();
      const put = await s3.send(new PutObjectCommand({ Bucket, Key, Body: Readable.from([data]), ContentLength: data.length, ChecksumAlgorithm: alg }));
      t.equal(put[`Checksum${alg}`], expected, `${alg}: the PUT answer names it`);
      const head = await s3.send(new HeadObjectCommand({ Bucket, Key, ChecksumMode: 'ENABLED' }));
      t.equal(head[`Checksum${alg}`], expected, `${alg}: stored with the object`);
    }
  });

  // An upload begun with a checksum algorithm wants every part's checksum;
  // streamed parts carry it as a trailer.
  await t.test('a multipart upload with checksums and streamed parts', async (t) => {
    const Key = 'tenant/blockM/parts';
    const data = randomBytes(5 * 1024 * 1024 + 1000);
    const up = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: 'CRC32' }));
    const pieces = [data.subarray(0, 5 * 1024 * 1024), data.subarray(5 * 1024 * 1024)];
    const Parts = [];
    for (const [i, piece] of pieces.entries()) {
      const part = await s3.send(new UploadPartCommand({
        Bucket, Key, UploadId: up.UploadId, PartNumber: i + 1, Body: Readable.from([piece]), ContentLength: piece.length, ChecksumAlgorithm: 'CRC32',
      }));
      t.ok(part.ChecksumCRC32, `part ${i + 1} has its checksum`);
      Parts.push({ PartNumber: i + 1, ETag: part.ETag, ChecksumCRC32: part.ChecksumCRC32 });
    }
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId: up.UploadId, MultipartUpload: { Parts } }));
    t.match(done.ChecksumCRC32, /-2$/, 'a checksum of the two parts\' checksums');
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    t.same(Buffer.from(await got.Body!.transformToByteArray()), data, 'byte-exact');
  });

  // Without clients the proxy checks no signature; a SigV2 URL's must not reach MinIO beside the proxy's own.
  await t.test('a SigV2 presigned GET, no client authentication configured', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/v2/obj', Body: 'v2' }));
    const r = await fetch(`${stack.endpoint}/${Bucket}/tenant/v2/obj?AWSAccessKeyId=AKID&Expires=${Math.floor(Date.now() / 1000) + 60}&Signature=abc%3D`);
    t.equal(r.status, 200);
    t.equal(await r.text(), 'v2');
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
