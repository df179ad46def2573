import t from 'tap';
import { Authenticator } from '../lib/auth';
import type { Credentials } from '../lib/config';
import { sign } from '../lib/sigv4';

// The re-signing every backend request gets, checked by the proxy's own
// verifier (lib/auth.ts, itself tested against the AWS SDK's and botocore's
// signers). Its URI encoding: test/uri-encoding.test.ts.

const CREDENTIALS: Credentials = { accessKeyId: 'AKIDSHARD', secretAccessKey: 'shard/secret+key' };
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const latin1 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');

t.test('a signed request verifies with the credentials it was signed for', async (t) => {
  const cases: { method: string; path: string; headers: Record<string, string>; payloadHash?: string }[] = [
    { method: 'GET', path: '/shard-1/tempo/t1/block/data.parquet', headers: { 'user-agent': 'warp', range: 'bytes=0-99' } },
    { method: 'GET', path: '/shard-1/a%20b/%C3%BC%28x%29', headers: {} },
    { method: 'GET', path: '/shard-1?list-type=2&prefix=a%2Fb%20c&delimiter=%2F', headers: { 'accept-encoding': 'identity' } },
    { method: 'PUT', path: '/shard-1/k', headers: { 'content-type': 'text/plain', 'content-length': '5', 'x-amz-meta-who': 'me' }, payloadHash: 'UNSIGNED-PAYLOAD' },
    // UTF-8 bytes as Node reads them off the wire and undici writes them back: one latin1 character a byte.
    { method: 'PUT', path: '/shard-1/k', headers: { 'x-amz-meta-who': latin1('voilà Škoda 日本'), 'content-disposition': latin1('attachment; filename="résumé.pdf"') }, payloadHash: 'UNSIGNED-PAYLOAD' },
  ];
  for (const c of cases) {
    const input = { ...c.headers };
    const before = JSON.stringify(input);
    const headers = sign({
      method: c.method, host: '127.0.0.1:9000', path: c.path, region: 'eu-central-1', headers: input,
      payloadHash: c.payloadHash ?? EMPTY_SHA256, credentials: CREDENTIALS,
    });
    const date = headers['x-amz-date'];
    t.match(date, /^\d{8}T\d{6}Z$/, `${c.method} ${c.path}: x-amz-date is the SigV4 basic format`);
    const signedAt = Date.UTC(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8), +date.slice(9, 11), +date.slice(11, 13), +date.slice(13, 15));
    t.ok(Math.abs(Date.now() - signedAt) < 5_000, `${c.method} ${c.path}: signed now`);
    t.equal(JSON.stringify(input), before, `${c.method} ${c.path}: the caller's headers are left as they were`);
    for (const [name, value] of Object.entries(c.headers)) t.equal(headers[name], value, `${name} is sent on`);

    // As the backend receives them: HTTP header names are case-blind.
    const received = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    const verify = (credentials: Credentials) => new Authenticator({
      clients: [credentials], regions: ['eu-central-1'], allowAnonymous: false, now: () => signedAt,
    }).authenticate({ method: c.method, url: c.path, headers: received });
    t.same(verify(CREDENTIALS), { accessKeyId: 'AKIDSHARD' }, `${c.method} ${c.path}: the signature verifies`);
    t.throws(() => verify({ ...CREDENTIALS, secretAccessKey: 'another' }), { code: 'SignatureDoesNotMatch' },
      `${c.method} ${c.path}: and not with another secret`);
  }
});

t.test('a header value that is not UTF-8 is refused, not signed wrongly', async (t) => {
  t.throws(() => sign({
    method: 'PUT', host: '127.0.0.1:9000', path: '/shard-1/k', region: 'eu-central-1',
    headers: { 'x-amz-meta-who': 'caf\u00e9' }, payloadHash: 'UNSIGNED-PAYLOAD', credentials: CREDENTIALS,
  }), { code: 'InvalidArgument', message: /x-amz-meta-who/ });
});
