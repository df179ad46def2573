import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { python } from '../helpers/python';
import { run } from '../helpers/run';
import { Ring } from '../../lib/ring';

// boto3's managed transfers (s3transfer) with 5 MiB parts: uploads from a
// file, from an unseekable stream and of 100 MiB, each downloaded again with
// ranged GETs and compared by sha256; the completed objects must sit whole
// in the shard the ring names.

t.test('boto3 multipart through the proxy', async (t) => {
  const stack = await startStack(t);
  const work = mkdtempSync(join(tmpdir(), 'tss-boto3-mpu-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const r = await run(python(), [join(__dirname, '..', 'clients', 'boto3_multipart.py'), stack.endpoint,
    CREDENTIALS.accessKeyId, CREDENTIALS.secretAccessKey, work], { timeoutMs: 600_000 });
  const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const checks = lines.filter((l) => 'check' in l);
  for (const c of checks) t.ok(c.ok, `${c.check} ${c.detail}`);
  t.equal(r.status, 0, r.stderr.slice(-2000));
  t.equal(checks.length, 10, 'every check ran');

  const objects: { object: string; size: number }[] = lines.filter((l) => 'object' in l);
  t.same(objects.map((o) => o.object).sort(), [
    'tenant/boto-mpu-big/data.parquet', 'tenant/boto-mpu-file/data.parquet', 'tenant/boto-mpu-stream/data.parquet',
  ]);
  const ring = new Ring(stack.shards);
  const contents = await stack.shardContents();
  for (const { object, size } of objects) {
    const owner = ring.locate(object);
    t.ok(contents.get(owner)!.includes(object), `${object} sits in ${owner}`);
    const direct = await stack.direct.send(new HeadObjectCommand({ Bucket: owner, Key: object }));
    t.equal(direct.ContentLength, size, `${object} is whole on the backend`);
  }
  t.equal([...contents.values()].flat().length, objects.length, 'no other object was left on any shard');
});
