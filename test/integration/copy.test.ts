import t from 'tap';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import aws4 from 'aws4';
import {
  S3Client, PutObjectCommand, GetObjectCommand, CopyObjectCommand, GetObjectTaggingCommand, HeadObjectCommand,
  CreateMultipartUploadCommand, UploadPartCopyCommand, CompleteMultipartUploadCommand, CreateBucketCommand,
  DeleteBucketCommand, DeleteObjectCommand,
} from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { outcome } from '../helpers/outcome';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { Ring } from '../../lib/ring';

// CopyObject within a shard, across shards, across endpoints (streamed) and
// between virtual buckets; directives and conditions honoured.

const Bucket = 'proxy-bucket';

function findKey(ring: Ring, want: string, not?: string): string {
  for (let i = 0; ; i++) {
    const key = `tenant/blk-${i}/meta.json`;
    const owner = ring.locate(key);
    if ((want === '*' || owner === want) && owner !== not) return key;
  }
}

t.test('copies on one endpoint stay server-side', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  const ring = new Ring(stack.shards);
  const src = findKey(ring, 'shard1');
  const data = randomBytes(1000);
  await s3.send(new PutObjectCommand({ Bucket, Key: src, Body: data, Metadata: { a: '1' }, Tagging: 'x=1', ContentType: 'text/x-src' }));

  // Tempo compacts by copying meta.json to meta.compacted.json in the block.
  const sameBlock = src.replace('meta.json', 'meta.compacted.json');
  const r = await s3.send(new CopyObjectCommand({ Bucket, Key: sameBlock, CopySource: `${Bucket}/${src}`, TaggingDirective: 'REPLACE', Tagging: 'compacted=yes' }));
  t.match(r.CopyObjectResult?.ETag, /^"/);
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket, Key: sameBlock }));
  t.same(tags.TagSet, [{ Key: 'compacted', Value: 'yes' }]);

  const otherShard = findKey(ring, 'shard2');
  await s3.send(new CopyObjectCommand({ Bucket, Key: otherShard, CopySource: encodeURIComponent(`${Bucket}/${src}`), MetadataDirective: 'REPLACE', Metadata: { b: '2' } }));
  const head = await s3.send(new HeadObjectCommand({ Bucket, Key: otherShard }));
  t.same(head.Metadata, { b: '2' }, 'REPLACE took the new metadata');
  const got = await s3.send(new GetObjectCommand({ Bucket, Key: otherShard }));
  t.same(Buffer.from(await got.Body!.transformToByteArray()), data);
  const contents = await stack.shardContents();
  t.ok(contents.get('shard2')!.includes(otherShard), 'the copy sits on its own owner');

  await t.rejects(s3.send(new CopyObjectCommand({ Bucket, Key: 'tenant/x/y', CopySource: `${Bucket}/${src}`, CopySourceIfMatch: '"nope"' })),
    { name: 'PreconditionFailed' });
  await t.rejects(s3.send(new CopyObjectCommand({ Bucket, Key: 'tenant/x/y', CopySource: `${Bucket}/tenant/missing/key` })), { name: 'NoSuchKey' });
  await t.rejects(s3.send(new CopyObjectCommand({ Bucket, Key: 'tenant/x/y', CopySource: `nobucket/${src}` })), { name: 'NoSuchBucket' });

  // MinIO names the source's bucket in a failed copy's error: the client must see its own.
  const path = `/${Bucket}/${findKey(ring, '*', 'shard1')}`;
  const signed = aws4.sign({ service: 's3', region: 'us-east-1', method: 'PUT', host: new URL(stack.endpoint).host, path,
    headers: { 'x-amz-copy-source': `/${Bucket}/${src}`, 'x-amz-copy-source-if-match': '"nope"', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, CREDENTIALS);
  const failed = await request(`${stack.endpoint}${path}`, { method: 'PUT', headers: signed.headers as Record<string, string> });
  const text = await failed.body.text();
  t.equal(failed.statusCode, 412);
  t.notMatch(text, /shard\d/, `no shard bucket named: ${text}`);
  t.match(text, `<BucketName>${Bucket}</BucketName>`);
});

t.test('across endpoints the proxy streams the copy', async (t) => {
  const second = await startMinio();
  t.teardown(() => second.stop());
  const stack = await startStack(t, {
    extra: { buckets: undefined, shards: [{ bucket: 'near' }, { bucket: 'far', endpoint: second.endpoint }] },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  const ring = new Ring(['near', 'far']);
  const src = findKey(ring, 'near');
  const dst = findKey(ring, 'far');
  const data = randomBytes(6 * 1024 * 1024 + 5);
  await s3.send(new PutObjectCommand({ Bucket, Key: src, Body: data, Metadata: { kept: 'yes' }, Tagging: 'k=v', ContentType: 'application/x-kept' }));
  const r = await s3.send(new CopyObjectCommand({ Bucket, Key: dst, CopySource: `${Bucket}/${src}` }));
  t.match(r.CopyObjectResult?.ETag, /^"/);
  const got = await s3.send(new GetObjectCommand({ Bucket, Key: dst }));
  t.same(Buffer.from(await got.Body!.transformToByteArray()), data, 'byte-exact across endpoints');
  t.same(got.Metadata, { kept: 'yes' }, 'COPY directive carried the metadata');
  t.equal(got.ContentType, 'application/x-kept');
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket, Key: dst }));
  t.same(tags.TagSet, [{ Key: 'k', Value: 'v' }], 'and the tags');
  const far = new S3Client({ endpoint: second.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD } });
  t.teardown(() => far.destroy());
  const direct = await far.send(new HeadObjectCommand({ Bucket: 'far', Key: dst }));
  t.equal(direct.ContentLength, data.length, 'stored on the other endpoint');

  // UploadPartCopy across endpoints, with a source range.
  const mpu = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: dst.replace('meta.json', 'data.parquet') }));
  const part = await s3.send(new UploadPartCopyCommand({
    Bucket, Key: dst.replace('meta.json', 'data.parquet'), UploadId: mpu.UploadId, PartNumber: 1,
    CopySource: `${Bucket}/${src}`, CopySourceRange: 'bytes=0-5242879',
  }));
  const tail = await s3.send(new UploadPartCopyCommand({
    Bucket, Key: dst.replace('meta.json', 'data.parquet'), UploadId: mpu.UploadId, PartNumber: 2,
    CopySource: `${Bucket}/${src}`, CopySourceRange: `bytes=5242880-${data.length - 1}`,
  }));
  await s3.send(new CompleteMultipartUploadCommand({
    Bucket, Key: dst.replace('meta.json', 'data.parquet'), UploadId: mpu.UploadId,
    MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.CopyPartResult?.ETag }, { PartNumber: 2, ETag: tail.CopyPartResult?.ETag }] },
  }));
  const whole = await s3.send(new GetObjectCommand({ Bucket, Key: dst.replace('meta.json', 'data.parquet') }));
  t.same(Buffer.from(await whole.Body!.transformToByteArray()), data, 'part copies reassemble the source');
});

t.test('a copy between two virtual buckets', async (t) => {
  const stack = await startStack(t, {
    extra: { buckets: undefined, virtual_buckets: [
      { name: 'tempo', buckets: ['tempo-1', 'tempo-2'] },
      { name: 'loki', buckets: ['loki-1', 'loki-2'] },
    ] },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  await s3.send(new PutObjectCommand({ Bucket: 'tempo', Key: 'a/b/c', Body: 'from tempo' }));
  await s3.send(new CopyObjectCommand({ Bucket: 'loki', Key: 'x/y/z', CopySource: 'tempo/a/b/c' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'loki', Key: 'x/y/z' }));
  t.equal(await got.Body!.transformToString(), 'from tempo');
  await t.rejects(s3.send(new GetObjectCommand({ Bucket: 'tempo', Key: 'x/y/z' })), { name: 'NoSuchKey' }, 'the buckets stay apart');
});


// The same requests copied by MinIO itself (one bucket) and streamed by the
// proxy (source and target on two endpoints) must fail alike.
t.test('a streamed copy fails as the backend fails a copy of its own', async (t) => {
  const second = await startMinio();
  t.teardown(() => second.stop());
  const stack = await startStack(t, {
    extra: { buckets: undefined, shards: [{ bucket: 'near' }, { bucket: 'far', endpoint: second.endpoint }] },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  const direct = new S3Client({ endpoint: second.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => direct.destroy());
  const ring = new Ring(['near', 'far']);
  const src = findKey(ring, 'near');
  const dst = findKey(ring, 'far');
  const data = randomBytes(1000);
  await direct.send(new CreateBucketCommand({ Bucket: 'ref' }));
  await direct.send(new PutObjectCommand({ Bucket: 'ref', Key: src, Body: data }));
  await s3.send(new PutObjectCommand({ Bucket, Key: src, Body: data }));

  const copies: [string, Record<string, unknown>][] = [
    ['missing source', { CopySource: 'tenant/missing/key' }],
    ['unknown source version', { CopySource: `${src}?versionId=6f1c1b2e-3d4a-4b5c-8d9e-0a1b2c3d4e5f` }],
    ['metadata too large', { CopySource: src, MetadataDirective: 'REPLACE', Metadata: { big: 'x'.repeat(2100) } }],
    ['unknown storage class', { CopySource: src, StorageClass: 'BOGUS' }],
    ['source condition fails', { CopySource: src, CopySourceIfMatch: '"nope"' }],
  ];
  for (const [name, input] of copies) {
    const there = await outcome(direct.send(new CopyObjectCommand({ ...input, Bucket: 'ref', Key: dst, CopySource: `ref/${input.CopySource}` } as never)));
    const here = await outcome(s3.send(new CopyObjectCommand({ ...input, Bucket, Key: dst, CopySource: `${Bucket}/${input.CopySource}` } as never)));
    t.not(there, '200', `${name}: MinIO refuses it (${there})`);
    t.equal(here, there, `${name}: the proxy answers as MinIO does (${here})`);
  }

  const refUpload = await direct.send(new CreateMultipartUploadCommand({ Bucket: 'ref', Key: dst }));
  const upload = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: dst }));
  for (const range of ['bytes=abc', 'bytes=-100', 'bytes=5-', 'bytes=10-5', 'bytes=0-99999', 'bytes=1000-1001', 'bytes=0-999', 'bytes=10-19']) {
    const there = await outcome(direct.send(new UploadPartCopyCommand({
      Bucket: 'ref', Key: dst, UploadId: refUpload.UploadId, PartNumber: 1, CopySource: `ref/${src}`, CopySourceRange: range,
    })));
    const here = await outcome(s3.send(new UploadPartCopyCommand({
      Bucket, Key: dst, UploadId: upload.UploadId, PartNumber: 1, CopySource: `${Bucket}/${src}`, CopySourceRange: range,
    })));
    t.equal(here, there, `part copy of ${range}: the proxy answers as MinIO does (${there})`);
  }

  // A shard bucket gone is the proxy's failure, never the object's absence.
  const near = new S3Client({ endpoint: stack.minio.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => near.destroy());
  await near.send(new DeleteObjectCommand({ Bucket: 'near', Key: src }));
  await near.send(new DeleteBucketCommand({ Bucket: 'near' }));
  t.equal(await outcome(s3.send(new CopyObjectCommand({ Bucket, Key: dst, CopySource: `${Bucket}/${src}` }))), '503 ServiceUnavailable',
    'the source shard bucket missing: 503');
});
