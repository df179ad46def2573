import t from 'tap';
import type { Test } from 'tap';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  S3Client, PutObjectCommand, GetObjectCommand, HeadObjectCommand, DeleteObjectCommand, DeleteBucketCommand,
  CreateMultipartUploadCommand, GetObjectTaggingCommand,
} from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { outcome } from '../helpers/outcome';
import { Ring } from '../../lib/ring';

// A shard bucket deleted under a running proxy is the proxy's fault (503),
// never the object's absence: Tempo takes a 404 on HEAD for "no such block".


function keyOn(ring: Ring, shard: string): string {
  for (let i = 0; ; i++) if (ring.locate(`tenant/blk-${i}/meta.json`) === shard) return `tenant/blk-${i}/meta.json`;
}

const Bucket = 'proxy-bucket';

function same(t: Test, got: string, want: string, name: string): void {
  t.equal(got, want, `${name}: ${got}`);
}

t.test('a shard bucket gone answers 503 for its objects', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  const ring = new Ring(stack.shards);
  const gone = keyOn(ring, 'shard2');
  const kept = keyOn(ring, 'shard3');
  for (const Key of [gone, kept]) await s3.send(new PutObjectCommand({ Bucket, Key, Body: 'x' }));
  await stack.direct.send(new DeleteObjectCommand({ Bucket: 'shard2', Key: gone }));
  await stack.direct.send(new DeleteBucketCommand({ Bucket: 'shard2' }));

  const unavailable = '503 ServiceUnavailable';
  same(t, await outcome(s3.send(new GetObjectCommand({ Bucket, Key: gone }))), unavailable, 'GET');
  same(t, await outcome(s3.send(new HeadObjectCommand({ Bucket, Key: gone }))), '503 Unknown', 'HEAD (no body: the SDK names only the status)');
  same(t, await outcome(s3.send(new PutObjectCommand({ Bucket, Key: gone, Body: 'y' }))), unavailable, 'PUT');
  same(t, await outcome(s3.send(new DeleteObjectCommand({ Bucket, Key: gone }))), unavailable, 'DELETE');
  same(t, await outcome(s3.send(new GetObjectTaggingCommand({ Bucket, Key: gone }))), unavailable, 'GET ?tagging');
  same(t, await outcome(s3.send(new CreateMultipartUploadCommand({ Bucket, Key: gone }))), unavailable, 'CreateMultipartUpload');
  same(t, await outcome(s3.send(new GetObjectCommand({ Bucket, Key: kept }))), '200', 'the other shards still serve');
  same(t, await outcome(s3.send(new HeadObjectCommand({ Bucket, Key: kept.replace('meta.json', 'absent.json') }))), '404 NotFound', 'absence on another shard is still 404');
});

// Backends other than MinIO answer a HEAD into a missing bucket with a bare
// 404; then the readiness probe's word decides.
t.test('a bare 404 to a HEAD on a shard whose bucket the probe found missing', async (t) => {
  const holder = await startStack(t, { shards: 1 });
  // MinIO behind a relay that drops its error-code header.
  const relay = createServer((req, res) => {
    const { port } = new URL(holder.minio.endpoint);
    const up = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      const headers = { ...r.headers };
      delete headers['x-minio-error-code'];
      res.writeHead(r.statusCode!, headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.teardown(() => relay.close());
  const stack = await startStack(t, {
    minio: holder.minio,
    extra: { buckets: undefined, shards: [{ bucket: 'bare', endpoint: `http://127.0.0.1:${(relay.address() as AddressInfo).port}` }] },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  same(t, await outcome(s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/a/b' }))), '404 NotFound', 'absent while the bucket is there');
  await stack.direct.send(new DeleteBucketCommand({ Bucket: 'bare' }));
  await stack.proxy.readiness.probe();
  same(t, await outcome(s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/a/b' }))), '503 Unknown', 'after the probe: 503');
});
