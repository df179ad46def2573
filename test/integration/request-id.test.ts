import t from 'tap';
import { request } from 'undici';
import { startStack } from '../helpers/stack';

// Every answer carries its own request id, shaped like S3's (16 upper-case
// hex digits), and an error body names the same id as the header.

t.test('request ids are distinct and match the error body', async (t) => {
  const stack = await startStack(t);
  const ids = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const r = await request(`${stack.endpoint}/proxy-bucket/tenant/missing-${i}`);
    const body = await r.body.text();
    const id = r.headers['x-amz-request-id'];
    t.equal(typeof id, 'string');
    if (typeof id !== 'string') continue;
    if (!/^[0-9A-F]{16}$/.test(id)) t.fail(`request id ${id} is not 16 upper-case hex digits`);
    t.equal(/<RequestId>([^<]*)<\/RequestId>/.exec(body)?.[1], id, 'the error body names the header\'s id');
    ids.add(id);
  }
  t.equal(ids.size, 200, 'no id is given twice');
});

// The proxy's own answers (admin paths, bucket answers, listings, errors found
// before or after routing) name the proxy and a request id of its own; an
// answer passed on from the backend keeps the backend's.
t.test('every answer names a request id and who answered', async (t) => {
  const stack = await startStack(t);
  const e = stack.endpoint;
  await request(`${e}/proxy-bucket/t/b/obj`, { method: 'PUT', body: 'x' }).then((r) => r.body.dump());
  const cases: [string, string, string, 'proxy' | 'backend'][] = [
    ['health', 'GET', '/healthz', 'proxy'],
    ['metrics', 'GET', '/metrics', 'proxy'],
    ['ListBuckets', 'GET', '/', 'proxy'],
    ['HeadBucket', 'HEAD', '/proxy-bucket', 'proxy'],
    ['ListObjectsV2', 'GET', '/proxy-bucket?list-type=2', 'proxy'],
    ['NoSuchBucket', 'GET', '/other-bucket/k', 'proxy'],
    ['InvalidURI', 'GET', '/proxy-bucket/%E0%A4%A', 'proxy'],
    ['NotImplemented', 'GET', '/proxy-bucket/t/b/obj?torrent', 'proxy'],
    ['GetObject', 'GET', '/proxy-bucket/t/b/obj', 'backend'],
    ['HeadObject', 'HEAD', '/proxy-bucket/t/b/obj', 'backend'],
    ['PutObject', 'PUT', '/proxy-bucket/t/b/obj2', 'backend'],
    ['NoSuchKey', 'GET', '/proxy-bucket/t/b/missing', 'backend'],
  ];
  for (const [name, method, path, who] of cases) {
    const r = await request(`${e}${path}`, { method: method as 'GET', body: method === 'PUT' ? 'y' : undefined });
    await r.body.dump();
    const id = String(r.headers['x-amz-request-id'] ?? '');
    const server = r.headers.server;
    if (who === 'proxy') {
      t.match(id, /^[0-9A-F]{16}$/, `${name} (${r.statusCode}): the proxy's request id`);
      t.equal(server, 'tempo-s3-shard', `${name}: the proxy answered`);
    } else {
      t.ok(id.length > 0, `${name} (${r.statusCode}): a request id (${id})`);
      t.equal(server, 'MinIO', `${name}: the backend's answer, passed on`);
    }
  }
});
