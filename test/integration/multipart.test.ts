import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  S3Client, GetObjectCommand, HeadObjectCommand, CreateMultipartUploadCommand, UploadPartCommand,
  ListPartsCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// Multipart uploads, each call routed by its key: lib-storage's managed
// upload, and the explicit calls Tempo makes for data.parquet.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

t.test('multipart through the proxy', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  const Bucket = 'proxy-bucket';
  const ring = new Ring(stack.shards);

  for (const size of [3 * 5 * MiB + 1234, 100 * MiB]) {
    await t.test(`lib-storage Upload of ${size} bytes`, async (t) => {
      const data = randomBytes(size);
      const Key = `tenant/mpu-${size}/data.parquet`;
      const chunks = (function* () { for (let i = 0; i < data.length; i += MiB) yield data.subarray(i, i + MiB); })();
      const up = new Upload({ client: s3, params: { Bucket, Key, Body: Readable.from(chunks) }, partSize: 5 * MiB, queueSize: 4 });
      const done = await up.done();
      t.equal(done.Bucket, Bucket, 'the answer names the virtual bucket');
      t.match(done.Location ?? '', `/${Bucket}/`, 'Location names the virtual bucket');
      const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
      t.equal(sha(Buffer.from(await got.Body!.transformToByteArray())), sha(data), 'byte-exact');
      const contents = await stack.shardContents();
      t.ok(contents.get(ring.locate(Key))!.includes(Key), 'completed on its owner');
    });
  }

  await t.test('explicit calls with part checksums, ListParts, abort', async (t) => {
    const Key = 'tenant/explicit/data.parquet';
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key, ChecksumAlgorithm: 'CRC32' }));
    t.equal(created.Bucket, Bucket);
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(100)];
    const done: { PartNumber: number; ETag?: string; ChecksumCRC32?: string }[] = [];
    for (const [i, Body] of parts.entries()) {
      const r = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId: created.UploadId, PartNumber: i + 1, Body, ChecksumAlgorithm: 'CRC32' }));
      t.ok(r.ChecksumCRC32, `part ${i + 1} checksum came back`);
      done.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumCRC32: r.ChecksumCRC32 });
    }
    const listed = await s3.send(new ListPartsCommand({ Bucket, Key, UploadId: created.UploadId }));
    t.equal(listed.Bucket, Bucket);
    t.same(listed.Parts?.map((p) => p.PartNumber), [1, 2, 3]);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
    t.ok(uploads.Uploads?.some((u) => u.UploadId === created.UploadId), 'listed among the bucket uploads');
    const completed = await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId: created.UploadId, MultipartUpload: { Parts: done } }));
    t.equal(completed.Bucket, Bucket);
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
    t.equal(head.ContentLength, 10 * MiB + 100);

    const other = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: 'tenant/aborted/data.parquet' }));
    await s3.send(new UploadPartCommand({ Bucket, Key: 'tenant/aborted/data.parquet', UploadId: other.UploadId, PartNumber: 1, Body: randomBytes(10) }));
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'tenant/aborted/data.parquet', UploadId: other.UploadId }));
    await t.rejects(s3.send(new ListPartsCommand({ Bucket, Key: 'tenant/aborted/data.parquet', UploadId: other.UploadId })), { name: 'NoSuchUpload' });
  });

  await t.test('a completion that fails inside its 200 answer reaches the client as an error', async (t) => {
    const Key = 'tenant/badparts/data.parquet';
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    await s3.send(new UploadPartCommand({ Bucket, Key, UploadId: created.UploadId, PartNumber: 1, Body: randomBytes(10) }));
    await t.rejects(s3.send(new CompleteMultipartUploadCommand({
      Bucket, Key, UploadId: created.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }] },
    })), { name: 'InvalidPart' });
  });
});
