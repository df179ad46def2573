import t from 'tap';
import { Writable } from 'node:stream';
import { connect } from 'node:net';
import { request } from 'undici';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { MINIO_PASSWORD } from '../helpers/minio';
import { ShardProxy } from '../../lib/server';
import { Logger } from '../../lib/log';
import { Ring } from '../../lib/ring';

// One JSON line per request at level info: what was done, where, with what
// outcome, and the ids a client can report (the proxy's, and the backend's
// for an answer passed on). Never a key, a secret or a signature.

t.test('each request is one log line naming its ids, and nothing secret', async (t) => {
  const stack = await startStack(t);
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const proxy = new ShardProxy(stack.config, new Logger('info', out));
  const { port } = await proxy.listen(0, '127.0.0.1');
  t.teardown(() => proxy.close());
  const endpoint = `http://127.0.0.1:${port}`;
  const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());

  const key = 'tenant-marker/block-marker/object-marker';
  const put = await s3.send(new PutObjectCommand({ Bucket: 'proxy-bucket', Key: key, Body: 'hello' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'proxy-bucket', Key: key }));
  await got.Body!.transformToString();
  const missing = await request(`${endpoint}/no-such-bucket/${key}?X-Amz-Signature=presigned-marker`);
  await missing.body.dump();

  const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'request');
  t.equal(entries.length, 3, 'one line per request');
  const [putLine, getLine, missingLine] = entries;
  const shard = new Ring(stack.shards).locate(key);

  t.match(putLine, { operation: 'PutObject', shard, status: 200, backend_request_id: put.$metadata.requestId });
  // Headers and body: a small body arrives with the headers, before the request is handed over.
  t.ok(Number(putLine.bytes_in) > 200, `the PUT's bytes in (${putLine.bytes_in}) hold its headers and body`);
  t.match(putLine.request_id, /^[0-9A-F]{16}$/, "the proxy's own id as well");
  t.match(getLine, { operation: 'GetObject', shard, status: 200, backend_request_id: got.$metadata.requestId });
  t.ok(Number(getLine.bytes_in) > 200, `the GET's bytes in (${getLine.bytes_in}) hold its headers`);
  t.ok(Number(getLine.bytes_out) > 200, `the GET's bytes out (${getLine.bytes_out}) hold the answer`);
  t.match(missingLine, { operation: 'GetObject', shard: null, status: 404, backend_request_id: null,
    request_id: missing.headers['x-amz-request-id'] }, "an answer of the proxy's own names the id the client got");

  // An upload whose client goes away halfway: not a success.
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('PUT /proxy-bucket/tenant-marker/aborted/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n');
  socket.write(Buffer.alloc(100_000));
  await new Promise((r) => setTimeout(r, 300));
  socket.destroy();
  let aborted: Record<string, unknown> | undefined;
  for (let i = 0; i < 50 && !aborted; i++) {
    await new Promise((r) => setTimeout(r, 100));
    aborted = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'request')[3];
  }
  t.match(aborted, { operation: 'PutObject', status: 499 }, 'logged as the client going away (499), not 200');

  for (const secret of ['marker', MINIO_PASSWORD, 'AWS4-HMAC-SHA256', 'Signature']) {
    t.notOk(lines.some((l) => l.includes(secret)), `no log line holds ${JSON.stringify(secret)}`);
  }
});
