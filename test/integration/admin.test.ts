import t from 'tap';
import { request } from 'undici';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// /healthz, /readyz and /metrics share the port with S3 and are never
// taken for S3 requests.

const get = (url: string) => request(url).then(async (r) => ({ status: r.statusCode, text: await r.body.text(), type: r.headers['content-type'] }));

t.test('health, readiness and metrics', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());

  t.same(await get(`${stack.endpoint}/healthz`).then((r) => [r.status, r.text]), [200, 'ok\n']);
  await stack.proxy.readiness.probe();
  t.same(await get(`${stack.endpoint}/readyz`).then((r) => [r.status, r.text]), [200, 'ready\n']);

  const ring = new Ring(stack.shards);
  const keys = Array.from({ length: 30 }, (_, i) => `tenant/b${i}/meta.json`);
  for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: 'proxy-bucket', Key, Body: 'x'.repeat(100) }));
  await (await s3.send(new GetObjectCommand({ Bucket: 'proxy-bucket', Key: keys[0] }))).Body!.transformToString();
  await s3.send(new GetObjectCommand({ Bucket: 'proxy-bucket', Key: 'tenant/none/x' })).catch(() => undefined);

  const m = await get(`${stack.endpoint}/metrics`);
  t.equal(m.status, 200);
  t.match(m.type, 'text/plain; version=0.0.4');
  t.match(m.text, /^tempo_s3_shard_requests_total\{operation="PutObject",status="2xx"\} 30$/m);
  t.match(m.text, /^tempo_s3_shard_requests_total\{operation="GetObject",status="4xx"\} 1$/m);
  t.match(m.text, /^tempo_s3_shard_request_duration_seconds_count\{operation="PutObject"\} 30$/m);
  for (const shard of stack.shards) {
    const expected = keys.filter((k) => ring.locate(k) === shard).length;
    t.match(m.text, new RegExp(`^tempo_s3_shard_objects_written_total\\{shard="${shard}"\\} ${expected}$`, 'm'), `${shard}: ${expected} objects written`);
  }
  t.match(m.text, new RegExp(`^tempo_s3_shard_backend_bytes_received_total\\{shard="${ring.locate(keys[0])}"\\} 100$`, 'm'));
  t.notMatch(m.text, /tenant\/b/, 'no key ever becomes a label');

  await stack.minio.stop();
  await stack.proxy.readiness.probe();
  const down = await get(`${stack.endpoint}/readyz`);
  t.equal(down.status, 503);
  for (const shard of stack.shards) t.match(down.text, `shard ${shard}`, `names ${shard}`);
  const failing = await s3.send(new GetObjectCommand({ Bucket: 'proxy-bucket', Key: keys[1] })).then(() => undefined, (e) => e);
  t.equal(failing?.$metadata?.httpStatusCode, 503, 'a backend that is down is a 503, not a 404');
  t.equal(failing?.name, 'ServiceUnavailable');
  const after = await get(`${stack.endpoint}/metrics`);
  t.match(after.text, /^tempo_s3_shard_backend_errors_total\{shard="shard\d",kind="connect"\} \d+$/m);
});
