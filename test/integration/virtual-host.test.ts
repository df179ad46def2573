import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { Agent } from 'node:http';
import type { LookupFunction } from 'node:net';
import { request } from 'undici';
import aws4 from 'aws4';
import {
  S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, DeleteObjectsCommand, HeadObjectCommand,
} from '@aws-sdk/client-s3';
import { startStack } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// Virtual-host style: `<bucket>.<domain>` in the Host header, for a
// configured domain, answers exactly as path style does; any other Host
// leaves the path to name the bucket. Clients are configured so the proxy
// really checks each signature over the Host it was sent.

const CLIENT = { accessKeyId: 'vhost-client', secretAccessKey: 'vhost-client-secret-0123456789' };
const Bucket = 'proxy-bucket';
const DOMAIN = 's3.local.test';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

t.test('virtual-host style beside path style', async (t) => {
  const stack = await startStack(t, {
    extra: { virtual_host_domains: [DOMAIN], clients: [{ access_key_id: CLIENT.accessKeyId, secret_access_key: CLIENT.secretAccessKey }] },
  });
  const port = new URL(stack.endpoint).port;
  const ring = new Ring(stack.shards);
  const pathStyle = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CLIENT });
  t.teardown(() => pathStyle.destroy());

  // Signs for `host` and sends to the proxy on loopback whatever the name.
  const send = async (method: string, host: string, path: string, body?: Buffer, signHost = host): Promise<Answer> => {
    const opts = aws4.sign({
      service: 's3', region: 'us-east-1', method, path, body,
      headers: { Host: `${signHost}:${port}`, ...(body ? { 'Content-Length': String(body.length) } : {}) },
    }, CLIENT);
    const headers = { ...(opts.headers as Record<string, string>), Host: `${host}:${port}` };
    const r = await request(`http://127.0.0.1:${port}${path}`, { method: method as 'GET', headers, body });
    return { status: r.statusCode, headers: r.headers, body: Buffer.from(await r.body.arrayBuffer()) };
  };
  const vhost = `${Bucket}.${DOMAIN}`;

  const keys = Array.from({ length: 12 }, (_, i) => `tenant/vh-${i}/data + ü.bin`);
  const data = new Map(keys.map((k) => [k, randomBytes(1000 + keys.indexOf(k))]));
  const encodedPath = (key: string) => '/' + key.split('/').map(encodeURIComponent).join('/');

  await t.test('PUT and GET on the virtual host', async (t) => {
    for (const key of keys) {
      const put = await send('PUT', vhost, encodedPath(key), data.get(key));
      t.equal(put.status, 200, `PUT ${key}: ${put.body}`);
    }
    const contents = await stack.shardContents();
    for (const key of keys) t.ok(contents.get(ring.locate(key))!.includes(key), `${key} sits in ${ring.locate(key)}`);
    t.equal(new Set(keys.map((k) => ring.locate(k))).size, stack.shards.length, 'the keys use every shard');
    t.equal([...contents.values()].flat().length, keys.length, 'nothing else was written');

    const got = await send('GET', vhost, encodedPath(keys[3]));
    t.equal(got.status, 200);
    t.equal(sha(got.body), sha(data.get(keys[3])!), 'GET on the virtual host is byte-exact');
    const head = await send('HEAD', vhost, encodedPath(keys[4]));
    t.equal(head.status, 200);
    t.equal(head.headers['content-length'], String(data.get(keys[4])!.length));
    const viaPath = await pathStyle.send(new GetObjectCommand({ Bucket, Key: keys[5] }));
    t.equal(sha(Buffer.from(await viaPath.Body!.transformToByteArray())), sha(data.get(keys[5])!), 'path style reads what the virtual host wrote');
    const missing = await send('GET', vhost, '/tenant/vh-none/x');
    t.equal(missing.status, 404);
    t.match(missing.body.toString(), '<Code>NoSuchKey</Code>');
  });

  await t.test('listings on the virtual host answer as path style does', async (t) => {
    for (const query of ['list-type=2&prefix=tenant%2F', 'list-type=2&max-keys=5&encoding-type=url', 'list-type=2&delimiter=%2F',
      'prefix=tenant%2Fvh-1&max-keys=2', 'delimiter=%2F&prefix=tenant%2F']) {
      const v = await send('GET', vhost, `/?${query}`);
      const p = await send('GET', `127.0.0.1`, `/${Bucket}?${query}`);
      t.equal(v.status, 200, query);
      t.equal(v.body.toString(), p.body.toString(), `the same body for ${query}`);
    }
    const full = (await send('GET', vhost, '/?list-type=2')).body.toString();
    t.match(full, `<Name>${Bucket}</Name>`, 'the answer names the virtual bucket');
    const listed = [...full.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1].replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c))));
    t.same(listed, [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), 'every key, merged in order');
  });

  await t.test('an SDK client in virtual-host style', async (t) => {
    // Every name resolves to loopback, so the SDK addresses
    // proxy-bucket.s3.local.test itself and signs that Host.
    const lookup = ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) =>
      opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as unknown as LookupFunction;
    const httpAgent = new Agent({ lookup });
    const s3 = new S3Client({
      endpoint: `http://${DOMAIN}:${port}`, region: 'us-east-1', forcePathStyle: false, credentials: CLIENT, requestHandler: { httpAgent },
    });
    t.teardown(() => { s3.destroy(); httpAgent.destroy(); });
    const seen: string[] = [];
    s3.middlewareStack.add((next) => async (args) => {
      seen.push((args.request as { hostname: string }).hostname);
      return next(args);
    }, { step: 'finalizeRequest', name: 'recordHost' });

    const body = randomBytes(70_000);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/sdk-vh/obj', Body: body, Metadata: { via: 'vhost' } }));
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/sdk-vh/obj' }));
    t.same(head.Metadata, { via: 'vhost' });
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/sdk-vh/obj' }));
    t.equal(sha(Buffer.from(await got.Body!.transformToByteArray())), sha(body));
    const pages: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket, MaxKeys: 4, ContinuationToken: token }));
      pages.push(...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
    } while (token);
    t.same(pages, [...keys, 'tenant/sdk-vh/obj'].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))), 'paged listing');
    const del = await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: [{ Key: 'tenant/sdk-vh/obj' }, { Key: keys[0] }, { Key: keys[1] }] } }));
    t.same(del.Deleted?.map((d) => d.Key).sort(), ['tenant/sdk-vh/obj', keys[0], keys[1]].sort());
    t.same(del.Errors ?? [], []);
    t.ok(seen.length >= 6 && seen.every((h) => h === `${Bucket}.${DOMAIN}`), `the SDK addressed the virtual host (${seen.length} requests)`);
  });

  await t.test('DELETE on the virtual host', async (t) => {
    for (const key of keys.slice(2)) {
      const r = await send('DELETE', vhost, encodedPath(key));
      t.equal(r.status, 204, `DELETE ${key}`);
    }
    const contents = await stack.shardContents();
    t.same([...contents.values()].flat(), [], 'every shard is empty');
    await t.rejects(pathStyle.send(new GetObjectCommand({ Bucket, Key: keys[2] })), { name: 'NoSuchKey' });
  });

  await t.test('other hosts are path style', async (t) => {
    const body = Buffer.from('path style under another name');
    const put = await send('PUT', `${Bucket}.other.test`, '/proxy-bucket/tenant/other/obj', body);
    t.equal(put.status, 200, 'an unconfigured domain leaves the bucket in the path');
    const got = await send('GET', DOMAIN, '/proxy-bucket/tenant/other/obj');
    t.equal(got.status, 200, 'the bare configured domain is path style too');
    t.equal(got.body.toString(), body.toString());
    const contents = await stack.shardContents();
    t.same(contents.get(ring.locate('tenant/other/obj')), ['tenant/other/obj'], 'stored under the key, not under "proxy-bucket/..."');

    const asKey = await send('GET', `${Bucket}.other.test`, '/tenant/other/obj');
    t.equal(asKey.status, 404, 'the first path segment names the bucket');
    t.match(asKey.body.toString(), '<Code>NoSuchBucket</Code>');
    const unknown = await send('GET', `nobucket.${DOMAIN}`, '/tenant/other/obj');
    t.equal(unknown.status, 404);
    t.match(unknown.body.toString(), '<Code>NoSuchBucket</Code>', 'an unknown bucket under the domain');
    const forged = await send('GET', vhost, '/tenant/other/obj', undefined, `other-bucket.${DOMAIN}`);
    t.equal(forged.status, 403, 'the Host is part of what the signature covers');
    t.match(forged.body.toString(), '<Code>SignatureDoesNotMatch</Code>');
    t.equal((await send('DELETE', vhost, '/tenant/other/obj')).status, 204);
  });

  await t.test('on the virtual host, /metrics, /healthz and /readyz are keys', async (t) => {
    for (const name of ['metrics', 'healthz', 'readyz']) {
      const body = Buffer.from(`the object named ${name}`);
      const put = await send('PUT', vhost, `/${name}`, body);
      t.equal(put.status, 200, `PUT ${name}`);
      t.match(put.headers.etag, /^"/, `PUT ${name}: an object's ETag`);
      const got = await send('GET', vhost, `/${name}`);
      t.equal(got.body.toString(), body.toString(), `GET ${name} reads the object`);
    }
    const contents = await stack.shardContents();
    t.same([...contents.values()].flat().filter((k) => !k.includes('/')).sort(), ['healthz', 'metrics', 'readyz'], 'stored in the shards');
    const metrics = await request(`${stack.endpoint}/metrics`);
    t.match(await metrics.body.text(), /^tempo_s3_shard_requests_total/m, 'path style, /metrics is still the proxy\'s');
  });
});
