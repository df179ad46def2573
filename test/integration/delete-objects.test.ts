import t from 'tap';
import { request } from 'undici';
import { S3Client, PutObjectCommand, DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// DeleteObjects split by shard: every shard gets its part with fresh
// integrity headers; the client gets one DeleteResult.

const Bucket = 'proxy-bucket';

t.test('batch delete across shards', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  const ring = new Ring(stack.shards);
  const keys = Array.from({ length: 60 }, (_, i) => `tenant/block-${i}/meta.json`);
  await Promise.all(keys.map((Key) => s3.send(new PutObjectCommand({ Bucket, Key, Body: Key }))));
  t.same(new Set(keys.map((k) => ring.locate(k))).size, 3, 'the keys span all three shards');

  const missing = ['tenant/never/written', 'tenant/also/missing'];
  const r = await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: [...keys.slice(0, 40), ...missing].map((Key) => ({ Key })) } }));
  t.same(r.Deleted?.map((d) => d.Key).sort(), [...keys.slice(0, 40), ...missing].sort(), 'S3 reports missing keys as deleted');
  t.same(r.Errors ?? [], []);
  const left = [...(await stack.shardContents()).values()].flat().sort();
  t.same(left, keys.slice(40).sort(), 'exactly the named keys are gone');

  const quiet = await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Quiet: true, Objects: keys.slice(40).map((Key) => ({ Key })) } }));
  t.same(quiet.Deleted ?? [], [], 'Quiet: no Deleted entries');
  t.same([...(await stack.shardContents()).values()].flat(), []);
});

t.test('malformed and oversized requests are refused as S3 does', async (t) => {
  const stack = await startStack(t);
  const post = (body: string) => request(`${stack.endpoint}/${Bucket}?delete`, { method: 'POST', body, headers: { 'content-type': 'application/xml' } })
    .then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));
  const bad = await post('<Delete><Object><Key>a</Key></Object>');
  t.equal(bad.status, 400);
  t.match(bad.text, '<Code>MalformedXML</Code>');
  const empty = await post('<Delete></Delete>');
  t.match(empty.text, '<Code>MalformedXML</Code>');
  const tooMany = await post(`<Delete>${'<Object><Key>k</Key></Object>'.repeat(1001)}</Delete>`);
  t.equal(tooMany.status, 400);
  t.match(tooMany.text, '<Code>MalformedXML</Code>');
  const md5 = await request(`${stack.endpoint}/${Bucket}?delete`, {
    method: 'POST', body: '<Delete><Object><Key>a</Key></Object></Delete>', headers: { 'content-md5': '1B2M2Y8AsgTpgAmY7PhCfg==' },
  });
  t.equal(md5.statusCode, 400);
  t.match(await md5.body.text(), '<Code>BadDigest</Code>', 'a Content-MD5 that does not match');
});
