import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { startMinio } from '../helpers/minio';
import type { Minio } from '../helpers/minio';

// One MinIO process per shard; one of them is killed and restarted while a
// mixed load runs. Whatever the proxy acknowledged with a 200 must read back
// byte-exact afterwards: nothing acknowledged is lost.

const Bucket = 'proxy-bucket';
const RUN_MS = 8_000;

t.test('a shard dies under load; nothing acknowledged is lost', async (t) => {
  const servers: Minio[] = [await startMinio(), await startMinio(), await startMinio()];
  t.teardown(() => Promise.all(servers.map((m) => m.stop())));
  const stack = await startStack(t, {
    minio: servers[0],
    extra: {
      buckets: undefined,
      shards: servers.map((m, i) => ({ bucket: `durable-${i + 1}`, endpoint: m.endpoint })),
      backend_timeout_seconds: 2,
    },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());

  const acked = new Map<string, string>();
  const outcomes = { putOk: 0, putFailed: 0, getOk: 0, getFailed: 0, listOk: 0, listFailed: 0, notFoundAfterAck: 0 };
  const deadline = Date.now() + RUN_MS;
  let n = 0;
  const writer = async () => {
    while (Date.now() < deadline) {
      const key = `tenant/blk-${n++}/data`;
      const body = randomBytes(1 + Math.floor(Math.random() * 300_000));
      try {
        await s3.send(new PutObjectCommand({ Bucket, Key: key, Body: body }));
        acked.set(key, createHash('sha256').update(body).digest('hex'));
        outcomes.putOk++;
      } catch {
        outcomes.putFailed++;
      }
    }
  };
  const reader = async () => {
    while (Date.now() < deadline) {
      const keys = [...acked.keys()];
      if (keys.length === 0) { await new Promise((r) => setTimeout(r, 20)); continue; }
      const key = keys[Math.floor(Math.random() * keys.length)];
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket, Key: key }));
        await r.Body!.transformToByteArray();
        outcomes.getOk++;
      } catch (err) {
        outcomes.getFailed++;
        if ((err as Error).name === 'NoSuchKey') outcomes.notFoundAfterAck++;
      }
      try {
        await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'tenant/', MaxKeys: 50 }));
        outcomes.listOk++;
      } catch {
        outcomes.listFailed++;
      }
    }
  };
  const chaos = async () => {
    await new Promise((r) => setTimeout(r, RUN_MS / 4));
    servers[1].process.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, RUN_MS / 4));
    await servers[1].restart();
  };
  await Promise.all([writer(), writer(), writer(), reader(), chaos()]);
  t.comment(JSON.stringify(outcomes));

  t.ok(outcomes.putOk > 50, `${outcomes.putOk} PUTs acknowledged`);
  t.ok(outcomes.putFailed > 0, `${outcomes.putFailed} PUTs failed while a shard was down (the outage was real)`);
  t.equal(outcomes.notFoundAfterAck, 0, 'a shard being down never showed as NoSuchKey');
  let intact = 0;
  for (const [key, sum] of acked) {
    const r = await s3.send(new GetObjectCommand({ Bucket, Key: key }));
    const got = createHash('sha256').update(Buffer.from(await r.Body!.transformToByteArray())).digest('hex');
    if (got === sum) intact++;
    else t.fail(`${key} changed`);
  }
  t.equal(intact, acked.size, `all ${acked.size} acknowledged objects read back byte-exact`);
});
