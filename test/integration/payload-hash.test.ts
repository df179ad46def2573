import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import aws4 from 'aws4';
import { request } from 'undici';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { Ring } from '../../lib/ring';

// A body's SHA-256 in x-amz-content-sha256 is passed to the shard, which
// checks the body against it. MinIO takes the hex digits in either case.

const Bucket = 'proxy-bucket';

t.test('x-amz-content-sha256 in upper-case hex', async (t) => {
  const stack = await startStack(t);
  const host = new URL(stack.endpoint).host;
  const put = async (key: string, body: Buffer, sha: string) => {
    const path = `/${Bucket}/${key}`;
    const signed = aws4.sign({ service: 's3', region: 'us-east-1', method: 'PUT', host, path, body,
      headers: { 'x-amz-content-sha256': sha } }, CREDENTIALS);
    const r = await request(`${stack.endpoint}${path}`, { method: 'PUT', headers: signed.headers as Record<string, string>, body });
    return { status: r.statusCode, text: await r.body.text() };
  };
  const body = randomBytes(1000);
  const sha = createHash('sha256').update(body).digest('hex').toUpperCase();
  t.equal((await put('upper/ok', body, sha)).status, 200, 'the right digest is taken');
  const got = await request(`${stack.endpoint}/${Bucket}/upper/ok`, {
    headers: aws4.sign({ service: 's3', region: 'us-east-1', host, path: `/${Bucket}/upper/ok` }, CREDENTIALS).headers as Record<string, string>,
  });
  t.same(Buffer.from(await got.body.arrayBuffer()), body, 'and the body stored');
  const wrong = await put('upper/wrong', body, sha.replace(/^./, (c) => (c === '0' ? '1' : '0')));
  t.equal(wrong.status, 400, 'a wrong one is refused');
  t.match(wrong.text, '<Code>XAmzContentSHA256Mismatch</Code>');
  const contents = await stack.shardContents();
  const owner = new Ring(stack.shards).locate('upper/wrong');
  t.notOk(contents.get(owner)!.includes('upper/wrong'), 'and nothing stored');
});
