import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { Client } from 'minio';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// Round trips through the `minio` JS client: bytes, ranges, metadata, tags,
// deletes, and where each object really lands.

const SIZES = [0, 1, 64 * 1024 + 1, 5 * 1024 * 1024, 50 * 1024 * 1024];

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

t.test('minio-js through the proxy', async (t) => {
  const stack = await startStack(t);
  const url = new URL(stack.endpoint);
  const client = new Client({
    endPoint: url.hostname, port: Number(url.port), useSSL: false,
    accessKey: CREDENTIALS.accessKeyId, secretKey: CREDENTIALS.secretAccessKey, region: 'us-east-1', pathStyle: true,
  });
  const ring = new Ring(stack.shards);
  const written = new Map<string, Buffer>();

  for (const size of SIZES) {
    const key = `tenant-${size}/block-${size}/data.bin`;
    const data = randomBytes(size);
    written.set(key, data);
    await t.test(`${size} bytes`, async (t) => {
      await client.putObject('proxy-bucket', key, data, size, { 'Content-Type': 'application/x-test', 'X-Amz-Meta-Owner': 'tempo' });
      const got = await readAll(await client.getObject('proxy-bucket', key));
      t.equal(got.length, size, 'same length');
      t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'), 'byte-exact');
      const stat = await client.statObject('proxy-bucket', key);
      t.equal(stat.size, size);
      t.equal(stat.metaData['content-type'], 'application/x-test');
      t.equal(stat.metaData['owner'], 'tempo');
      if (size > 10) {
        const part = await readAll(await client.getPartialObject('proxy-bucket', key, 3, 7));
        t.same(part, data.subarray(3, 10), 'range a-b');
      }
    });
  }

  await t.test('tags', async (t) => {
    const key = 'tenant-1/block-1/data.bin';
    await client.setObjectTagging('proxy-bucket', key, { team: 'obs', tier: 'hot' });
    const tags = await client.getObjectTagging('proxy-bucket', key);
    t.same(Object.fromEntries((tags as { Key: string; Value: string }[]).map((x) => [x.Key, x.Value])), { team: 'obs', tier: 'hot' });
    await client.removeObjectTagging('proxy-bucket', key, { versionId: '' });
    t.same(await client.getObjectTagging('proxy-bucket', key), []);
  });

  await t.test('each object sits in the bucket the ring names, and only there', async (t) => {
    const contents = await stack.shardContents();
    for (const key of written.keys()) {
      const owner = ring.locate(key);
      for (const [bucket, keys] of contents) {
        t.equal(keys.includes(key), bucket === owner, `${key} ${bucket === owner ? 'in' : 'not in'} ${bucket}`);
      }
    }
  });

  await t.test('delete', async (t) => {
    for (const key of written.keys()) await client.removeObject('proxy-bucket', key);
    const contents = await stack.shardContents();
    t.same([...contents.values()].flat(), [], 'every shard empty');
    await t.rejects(client.statObject('proxy-bucket', 'tenant-1/block-1/data.bin'), { code: 'NotFound' });
  });
});
