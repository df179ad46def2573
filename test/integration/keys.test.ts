import t from 'tap';
import { request } from 'undici';
import { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, CreateBucketCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// Keys are opaque bytes: whatever a client names is stored under exactly
// that name, in the bucket the ring picks, and can never reach another
// backend bucket or path.

const Bucket = 'proxy-bucket';
// MinIO refuses `.`/`..` components and empty segments, and drops leading
// slashes (so `//lead` is not in this list: MinIO would store it as `lead`).
const KEYS = [
  'tenant/../../shard2/escape', 'tenant/./x', '../../etc/passwd', '..', 'a//b//c', 'tenant/%2F/x',
  'tenant/a%2Fb', 'plus+sign/a+b/c', 'sp ace/x y/ z ', 'ünï/cødé/日本語', 'emoji/\u{1F600}/x', 'trailing/slash/',
  'tenant/block/' + Array.from({ length: 5 }, () => 'k'.repeat(200)).join('/') + '/' + 'k'.repeat(1024 - 13 - 1005 - 1), 'q?x=1/y#z/w', 'amp&lt;/x/y', 'shard1/x/y',
];

t.test('odd keys: stored as one MinIO bucket stores them, and only in their own shard', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());
  await stack.direct.send(new CreateBucketCommand({ Bucket: 'single' }));
  const ring = new Ring(stack.shards);
  const outcome = (p: Promise<unknown>) => p.then(() => 'stored', (e: Error) => e.name);
  const stored: string[] = [];
  for (const Key of KEYS) {
    const direct = await outcome(stack.direct.send(new PutObjectCommand({ Bucket: 'single', Key, Body: 'x' })));
    const proxied = await outcome(s3.send(new PutObjectCommand({ Bucket, Key, Body: `body of ${Key}` })));
    t.equal(proxied, direct, `${JSON.stringify(Key.slice(0, 40))}: ${direct} through the proxy as directly`);
    if (proxied !== 'stored') continue;
    stored.push(Key);
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    t.equal(await got.Body!.transformToString(), `body of ${Key}`, 'round trip');
  }
  t.same(KEYS.filter((k) => !stored.includes(k)), ['tenant/../../shard2/escape', 'tenant/./x', '../../etc/passwd', '..', 'a//b//c'],
    'only the keys MinIO itself refuses were refused (the 1024-byte key was stored)');
  const contents = await stack.shardContents();
  for (const [bucket, keys] of contents) {
    t.same(keys.sort(), stored.filter((k) => ring.locate(k) === bucket).sort(), `${bucket} holds exactly its keys, under their own names`);
  }
  const listed: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket, ContinuationToken: token, MaxKeys: 5 }));
    listed.push(...(page.Contents ?? []).map((c) => c.Key!));
    token = page.NextContinuationToken;
  } while (token);
  t.same(listed, [...stored].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), 'the listing names every key once, in byte order');
});

t.test('keys S3 refuses', async (t) => {
  const stack = await startStack(t);
  const tooLong = await request(`${stack.endpoint}/${Bucket}/${'k'.repeat(1025)}`, { method: 'PUT', body: 'x' });
  t.equal(tooLong.statusCode, 400);
  t.match(await tooLong.body.text(), '<Code>KeyTooLongError</Code>');
  const badUtf8 = await request(`${stack.endpoint}/${Bucket}/bad%C3%28utf8`, { method: 'PUT', body: 'x' });
  t.equal(badUtf8.statusCode, 400);
  t.match(await badUtf8.body.text(), '<Code>InvalidURI</Code>');
  const unknown = await request(`${stack.endpoint}/${Bucket}/key?torrent`);
  t.equal(unknown.statusCode, 501);
  t.match(await unknown.body.text(), '<Code>NotImplemented</Code>');
  const bucketSub = await request(`${stack.endpoint}/${Bucket}?policy`);
  t.equal(bucketSub.statusCode, 501);
  t.same([...(await stack.shardContents()).values()].flat(), [], 'nothing was stored');
});
