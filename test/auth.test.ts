import t from 'tap';
import { createHash, createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { SignatureV4, getSigningKey } from '@smithy/signature-v4';
import { Sha256 } from '@smithy/core/checksum';
import { buildQueryString } from '@smithy/core/protocols';
import type { HttpRequest } from '@smithy/types';
import {
  S3Client, PutObjectCommand, ListObjectsV2Command, GetBucketLocationCommand, CreateMultipartUploadCommand,
  UploadPartCommand, DeleteObjectsCommand, GetObjectCommand,
} from '@aws-sdk/client-s3';
import { Authenticator, type AuthInput, type AuthResult } from '../lib/auth';
import { AwsChunkedDecoder, type StreamingKind } from '../lib/aws-chunked';
import type { Credentials } from '../lib/config';
import { python } from './helpers/python';
import { run } from './helpers/run';

// Good requests come from real signers (the AWS SDK for JavaScript v3 and its
// smithy SigV4 signer, botocore); bad ones are crafted from good ones, one
// defect at a time, so each refusal is for the reason the test names.

const CLIENT: Credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const OTHER: Credentials = { accessKeyId: 'AKIDOTHER', secretAccessKey: 'other/secret+key' };
const REGION = 'eu-west-1';
const HOST = 'proxy.example:9000';
const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);
const MIN = 60_000;
const EMPTY_SHA256 = createHash('sha256').digest('hex');

function authenticator(now: number, allowAnonymous = false): Authenticator {
  return new Authenticator({ clients: [CLIENT, OTHER], regions: [REGION, 'us-east-1'], allowAnonymous, now: () => now });
}

function signer(opts: { credentials?: Credentials; region?: string; service?: string; applyChecksum?: boolean } = {}): SignatureV4 {
  // What the S3 client configures: S3 paths are not escaped a second time.
  return new SignatureV4({
    credentials: opts.credentials ?? CLIENT, region: opts.region ?? REGION, service: opts.service ?? 's3',
    sha256: Sha256, uriEscapePath: false, applyChecksum: opts.applyChecksum ?? true,
  });
}

interface RequestSpec {
  method?: string;
  /** Already encoded, as the S3 client's serializer hands it to the signer. */
  path: string;
  query?: Record<string, string | string[]>;
  headers?: Record<string, string>;
}

function httpRequest(spec: RequestSpec): HttpRequest {
  return {
    method: spec.method ?? 'GET', protocol: 'http:', hostname: 'proxy.example', port: 9000, path: spec.path,
    query: spec.query ?? {}, headers: { host: HOST, ...spec.headers },
  };
}

/** The request as the proxy's HTTP server would see it; Node lower-cases header names. */
function toInput(req: HttpRequest): AuthInput {
  const qs = buildQueryString(req.query ?? {});
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name.toLowerCase()] = value;
  return { method: req.method, url: req.path + (qs === '' ? '' : '?' + qs), headers };
}

async function signed(spec: RequestSpec, opts: Parameters<typeof signer>[0] = {}, at = T0): Promise<AuthInput> {
  return toInput(await signer(opts).sign(httpRequest(spec), { signingDate: new Date(at) }));
}

async function presigned(spec: RequestSpec, expiresIn = 3600, opts: { unhoistable?: string[]; at?: number } = {}): Promise<AuthInput> {
  // As @aws-sdk/s3-request-presigner does: S3 URLs carry no payload hash.
  const req = httpRequest({ ...spec, headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...spec.headers } });
  return toInput(await signer().presign(req, {
    signingDate: new Date(opts.at ?? T0), expiresIn, unhoistableHeaders: new Set(opts.unhoistable ?? []),
  }));
}

function clone(input: AuthInput, change: (i: AuthInput) => void): AuthInput {
  const copy = { ...input, headers: { ...input.headers } };
  change(copy);
  return copy;
}

function setAuthorization(input: AuthInput, edit: (a: string) => string): AuthInput {
  return clone(input, (i) => { i.headers.authorization = edit(String(i.headers.authorization)); });
}

function setQuery(input: AuthInput, edit: (q: string) => string): AuthInput {
  const q = input.url.indexOf('?');
  return { ...input, url: input.url.slice(0, q) + '?' + edit(input.url.slice(q + 1)) };
}

function rejects(t: tap.Test, fn: () => unknown, code: string, status: number, message?: RegExp, name = `${code}`): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  t.match(err, { name: 'S3Error', code, status }, name);
  if (message) t.match((err as Error | undefined)?.message, message, `${name}: message`);
  for (const c of [CLIENT, OTHER]) {
    t.notOk((err as Error | undefined)?.message.includes(c.secretAccessKey), `${name}: no secret in the message`);
  }
}

function accepts(t: tap.Test, a: Authenticator, input: AuthInput, name: string, accessKeyId = CLIENT.accessKeyId): AuthResult | undefined {
  try {
    const result = a.authenticate(input);
    t.equal(result.accessKeyId, accessKeyId, name);
    return result;
  } catch (err) {
    t.fail(`${name}: ${(err as Error).message}`);
    return undefined;
  }
}

// ---------------------------------------------------------------- real SDK requests

t.test('requests made by the AWS SDK for JavaScript v3 verify', async (t) => {
  const captured: HttpRequest[] = [];
  const client = new S3Client({
    region: REGION, endpoint: `http://${HOST}`, forcePathStyle: true, credentials: CLIENT, maxAttempts: 1,
    requestHandler: { handle: async (req: HttpRequest) => { captured.push(req); throw new Error('captured'); } },
  });
  const commands = [
    new PutObjectCommand({ Bucket: 'vb', Key: 'dir/a b+c/é/ü.txt', Body: 'hello' }),
    new PutObjectCommand({ Bucket: 'vb', Key: 'a/../b//c/./d', Body: 'x', Metadata: { note: '  two  spaces  ' } }),
    new PutObjectCommand({ Bucket: 'vb', Key: 'streamed', Body: Readable.from([Buffer.from('abc')]), ContentLength: 3 }),
    new ListObjectsV2Command({ Bucket: 'vb', Prefix: 'a b/ü+', Delimiter: '/', StartAfter: 'x=y&z' }),
    new GetBucketLocationCommand({ Bucket: 'vb' }),
    new CreateMultipartUploadCommand({ Bucket: 'vb', Key: 'big file' }),
    new UploadPartCommand({ Bucket: 'vb', Key: 'big file', UploadId: 'id/with+chars=', PartNumber: 2, Body: 'part' }),
    new DeleteObjectsCommand({ Bucket: 'vb', Delete: { Objects: [{ Key: 'a' }, { Key: 'b c' }] } }),
    new GetObjectCommand({ Bucket: 'vb', Key: '~tilde*star(paren)!', Range: 'bytes=0-9', ResponseContentDisposition: 'attachment; filename="a b.txt"' }),
  ];
  for (const command of commands) {
    // The SDK signs with the machine clock; the proxy's clock is whatever the test says.
    await client.send(command as never).catch((err: Error) => { if (err.message !== 'captured') throw err; });
  }
  t.equal(captured.length, commands.length, 'every command reached the transport');
  client.destroy();

  const nowOf = (req: HttpRequest) => {
    const d = String(req.headers['x-amz-date']);
    return Date.UTC(+d.slice(0, 4), +d.slice(4, 6) - 1, +d.slice(6, 8), +d.slice(9, 11), +d.slice(11, 13), +d.slice(13, 15));
  };
  for (const req of captured) {
    const input = toInput(req);
    const result = accepts(t, authenticator(nowOf(req) + 5 * MIN), input, `${req.method} ${input.url}`);
    t.equal(result?.chunk, undefined, `${input.url}: no chunk context`);
  }

  t.equal(captured[2].headers['x-amz-content-sha256'], 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'a stream body went aws-chunked, unsigned');
  const list = toInput(captured[3]);
  t.match(list.url, /prefix=a%20b%2F%C3%BC%2B/, 'the listing prefix was percent-encoded by the SDK');
  const a = authenticator(nowOf(captured[3]));
  accepts(t, a, setQuery(list, (q) => q.replace(/%20/g, '+')), '+ in the query is a space');
  rejects(t, () => a.authenticate(setQuery(list, (q) => q.replace('%2B', '+'))), 'SignatureDoesNotMatch', 403, undefined,
    'a literal + in the query is a space, not a plus');

  const put = toInput(captured[0]);
  const b = authenticator(nowOf(captured[0]));
  t.match(put.url, /^\/vb\/dir\/a%20b%2Bc\/%C3%A9\/%C3%BC\.txt/, 'key sent encoded');
  accepts(t, b, { ...put, url: put.url.replace('%2B', '+') }, 'a raw + in the path is a plus');
  accepts(t, b, { ...put, url: put.url.replace('%C3%A9', '%c3%a9') }, 'lower-case escapes decode to the same key');
  rejects(t, () => b.authenticate({ ...put, url: put.url.replace('%20', '+') }), 'SignatureDoesNotMatch', 403, undefined,
    'a + in the path is not a space');

  const dots = toInput(captured[1]);
  t.match(dots.url, /^\/vb\/a\/\.\.\/b\/\/c\/\.\/d\?/, '.. and // went to the wire as they are');
  rejects(t, () => authenticator(nowOf(captured[1])).authenticate({ ...dots, url: dots.url.replace('/a/../b//c/./d', '/b/c/d') }),
    'SignatureDoesNotMatch', 403, undefined, 'the path is not normalised: a normalised path is another key');
});

// ---------------------------------------------------------------- smithy signer, crafted shapes

t.test('header-signed requests from the smithy signer verify', async (t) => {
  const a = authenticator(T0);
  const cases: [string, RequestSpec][] = [
    ['listing with a space, a slash and a flag', { path: '/vb', query: { prefix: 'a b', 'list-type': '2', delimiter: '/' } }],
    ['?uploads=', { method: 'POST', path: '/vb/key', query: { uploads: '' } }],
    ['?location=', { path: '/vb', query: { location: '' } }],
    ['repeated parameter', { path: '/vb', query: { tag: ['b', 'a', 'a b'] } }],
    ['parameter names that sort before =', { path: '/vb', query: { 'a-b': '1', a: '2', ab: '3' } }],
    ['root path', { path: '/' }],
    ['.. and //', { method: 'PUT', path: '/vb/x/../y//z', headers: { 'x-amz-content-sha256': EMPTY_SHA256 } }],
    ['unicode, spaces, plus, reserved characters', { path: '/vb/%C3%A9t%C3%A9%20%2B%20%21%27%28%29%2A/%E2%82%AC' }],
    ['header value with runs of spaces', { path: '/vb/k', headers: { 'x-amz-meta-note': '  a   b\t c  ' } }],
    ['unsigned payload', { method: 'PUT', path: '/vb/k', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }],
  ];
  for (const [name, spec] of cases) accepts(t, a, await signed(spec), name);

  const other = await signed({ path: '/vb/k' }, { credentials: OTHER });
  accepts(t, a, other, 'the second client', OTHER.accessKeyId);
  accepts(t, a, await signed({ path: '/vb', query: { location: '' } }, { region: 'us-east-1' }), 'us-east-1, as minio-go signs ?location');

  const uploads = await signed({ method: 'POST', path: '/vb/key', query: { uploads: '' } });
  accepts(t, a, { ...uploads, url: uploads.url.replace('?uploads=', '?uploads') }, '?uploads without "=" means the same');

  const base = await signed({ path: '/vb', query: { prefix: 'p' } });
  accepts(t, a, setAuthorization(base, (s) => s.replace(/, /g, ',')), 'no spaces after the commas');
  accepts(t, a, setAuthorization(base, (s) => s.replace(/, /g, ' ,  ')), 'extra spaces around the commas');
  accepts(t, a, clone(base, (i) => { i.headers.range = 'bytes=0-1'; i.headers['user-agent'] = 'x'; }),
    'unsigned headers other than host and x-amz-* are ignored, as S3 does');

  // Header bytes above 0x7f reach us one latin1 character per byte.
  const meta = await signed({ path: '/vb/k', headers: { 'x-amz-meta-name': 'Zoë €' } });
  accepts(t, a, clone(meta, (i) => {
    i.headers['x-amz-meta-name'] = Buffer.from(String(i.headers['x-amz-meta-name']), 'utf8').toString('latin1');
  }), 'UTF-8 header value as Node delivers it');
  // Each of these has the byte 0xA0 in its UTF-8 (à is C3 A0, Š C5 A0, Р D0
  // A0, a no-break space C2 A0), which as a latin1 character is white space.
  for (const value of ['voilà', 'Škoda', 'Р', 'a\u00a0b', 'à ']) {
    const input = await signed({ path: '/vb/k', headers: { 'x-amz-meta-name': value } });
    accepts(t, a, clone(input, (i) => {
      i.headers['x-amz-meta-name'] = Buffer.from(String(i.headers['x-amz-meta-name']), 'utf8').toString('latin1');
    }), `UTF-8 header value ${JSON.stringify(value)} as Node delivers it`);
  }

  // Node gives repeated headers as arrays for some names; S3 joins values with ",".
  const repeated = await signed({ path: '/vb/k', headers: { 'x-amz-meta-list': 'one,two' } });
  accepts(t, a, clone(repeated, (i) => { i.headers['x-amz-meta-list'] = ['one', 'two'] as never; }), 'repeated header values');
});

t.test('presigned requests from the smithy signer verify', async (t) => {
  const a = authenticator(T0 + MIN);
  accepts(t, a, await presigned({ path: '/vb/a%20b%2Bc/%C3%A9' }), 'GET a key');
  accepts(t, a, await presigned({ path: '/vb', query: { prefix: 'a b', 'list-type': '2', delimiter: '/' } }), 'listing');
  accepts(t, a, await presigned({ path: '/vb/x/../y//z', method: 'PUT' }), '.. and //');
  const acl = await presigned({ method: 'PUT', path: '/vb/k', headers: { 'x-amz-acl': 'private' } });
  t.match(acl.url, /x-amz-acl=private/, 'x-amz-acl was hoisted into the query');
  accepts(t, a, acl, 'hoisted x-amz-* header');

  const payload = Buffer.from('body');
  const hash = createHash('sha256').update(payload).digest('hex');
  const withHash = await presigned({ method: 'PUT', path: '/vb/k', headers: { 'x-amz-content-sha256': hash } }, 3600,
    { unhoistable: ['x-amz-content-sha256'] });
  t.match(withHash.url, /X-Amz-SignedHeaders=host%3Bx-amz-content-sha256/, 'payload hash header signed');
  accepts(t, a, withHash, 'signed payload hash header');
  rejects(t, () => a.authenticate(clone(withHash, (i) => { i.headers['x-amz-content-sha256'] = EMPTY_SHA256; })),
    'SignatureDoesNotMatch', 403, undefined, 'the signed payload hash is what was signed');

  const plain = await presigned({ method: 'PUT', path: '/vb/k' });
  accepts(t, a, clone(plain, (i) => { i.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'; }),
    'an unsigned x-amz-content-sha256 is tolerated, as S3 does');
  accepts(t, a, setQuery(plain, (q) => q.replace(/%2F/g, '%2f')), 'lower-case escapes in the query');
});

t.test('the Date header stands in for x-amz-date', async (t) => {
  // No SDK signs with Date any more; this follows the AWS documentation by
  // hand and lets the smithy signer do the key derivation and HMAC.
  const date = new Date(T0).toUTCString();
  const canonical = ['GET', '/vb/k', '', `date:${date}`, `host:${HOST}`, `x-amz-content-sha256:${EMPTY_SHA256}`, '',
    'date;host;x-amz-content-sha256', EMPTY_SHA256].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', '20261122T100000Z', `20261122/${REGION}/s3/aws4_request`,
    createHash('sha256').update(canonical).digest('hex')].join('\n');
  const signature = await signer().sign(stringToSign, { signingDate: new Date(T0) });
  const input: AuthInput = {
    method: 'GET', url: '/vb/k',
    headers: {
      host: HOST, date, 'x-amz-content-sha256': EMPTY_SHA256,
      authorization: `AWS4-HMAC-SHA256 Credential=${CLIENT.accessKeyId}/20261122/${REGION}/s3/aws4_request, ` +
        `SignedHeaders=date;host;x-amz-content-sha256, Signature=${signature}`,
    },
  };
  accepts(t, authenticator(T0 + 14 * MIN), input, 'Date header');
  rejects(t, () => authenticator(T0 + 16 * MIN).authenticate(input), 'RequestTimeTooSkewed', 403, undefined, 'Date header skewed');
});

// ---------------------------------------------------------------- signed aws-chunked payloads

function hmac(key: Uint8Array | string, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** aws-chunked body with a chunk-signature chain, per the AWS SigV4 streaming documentation. */
function chunkedBody(payload: Buffer, key: Uint8Array, amzDate: string, scope: string, seed: string, trailer: boolean): Buffer {
  const out: Buffer[] = [];
  let previous = seed;
  const sign = (chunk: Buffer) => {
    previous = hmac(key, ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, previous, EMPTY_SHA256,
      createHash('sha256').update(chunk).digest('hex')].join('\n')).toString('hex');
    return previous;
  };
  for (let pos = 0; pos < payload.length; pos += 8192) {
    const chunk = payload.subarray(pos, pos + 8192);
    out.push(Buffer.from(`${chunk.length.toString(16)};chunk-signature=${sign(chunk)}\r\n`), chunk, Buffer.from('\r\n'));
  }
  out.push(Buffer.from(`0;chunk-signature=${sign(Buffer.alloc(0))}\r\n`));
  if (trailer) {
    const line = 'x-amz-checksum-sha256:' + createHash('sha256').update(payload).digest('base64');
    const signature = hmac(key, ['AWS4-HMAC-SHA256-TRAILER', amzDate, scope, previous,
      createHash('sha256').update(line + '\n').digest('hex')].join('\n')).toString('hex');
    out.push(Buffer.from(`${line}\r\nx-amz-trailer-signature:${signature}\r\n`));
  }
  out.push(Buffer.from('\r\n'));
  return Buffer.concat(out);
}

function decodeAll(body: Buffer, kind: StreamingKind, result: AuthResult, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const decoder = new AwsChunkedDecoder({
      kind, decodedLength: length, verify: result.chunk,
      trailer: kind === 'signed-trailer' ? 'x-amz-checksum-sha256' : undefined,
    });
    const parts: Buffer[] = [];
    decoder.on('data', (b: Buffer) => parts.push(b));
    decoder.on('end', () => resolve(Buffer.concat(parts)));
    decoder.on('error', reject);
    decoder.end(body);
  });
}

t.test('a signed aws-chunked upload gets a chunk context the decoder verifies with', async (t) => {
  const payload = Buffer.alloc(20000, 'z');
  const scope = `20261122/${REGION}/s3/aws4_request`;
  const key = await getSigningKey(Sha256, CLIENT, '20261122', REGION, 's3');
  for (const [kind, header] of [['signed', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'], ['signed-trailer', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER']] as const) {
    const input = await signed({
      method: 'PUT', path: '/vb/chunked',
      headers: {
        'x-amz-content-sha256': header, 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(payload.length),
        ...(kind === 'signed-trailer' ? { 'x-amz-trailer': 'x-amz-checksum-sha256' } : {}),
      },
    });
    const seed = /Signature=([0-9a-f]{64})$/.exec(String(input.headers.authorization))![1];
    const result = authenticator(T0).authenticate(input);
    t.equal(result.chunk?.seedSignature, seed, `${kind}: seed is the request signature`);
    t.equal(result.chunk?.amzDate, '20261122T100000Z', `${kind}: amzDate`);
    t.equal(result.chunk?.scope, scope, `${kind}: scope`);
    t.same(result.chunk?.signingKey, Buffer.from(key), `${kind}: the signing key the SDK derives`);

    const body = chunkedBody(payload, key, '20261122T100000Z', scope, seed, kind === 'signed-trailer');
    t.same(await decodeAll(body, kind, result, payload.length), payload, `${kind}: chunk chain verified and decoded`);
    const forged = chunkedBody(Buffer.alloc(20000, 'y'), await getSigningKey(Sha256, OTHER, '20261122', REGION, 's3'),
      '20261122T100000Z', scope, seed, kind === 'signed-trailer');
    await t.rejects(decodeAll(forged, kind, result, payload.length), { code: 'SignatureDoesNotMatch' },
      `${kind}: chunks signed with another key are refused`);
  }
});

// ---------------------------------------------------------------- botocore

const BOTO = `
import json, sys, boto3
from botocore.config import Config
from botocore.awsrequest import AWSResponse
spec = json.loads(sys.argv[1])
s3 = boto3.client('s3', endpoint_url=spec['endpoint'], region_name=spec['region'],
                  aws_access_key_id=spec['akid'], aws_secret_access_key=spec['secret'],
                  config=Config(signature_version='s3v4', s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
out = []
def capture(request, **kwargs):
    headers = {k: (v.decode('latin1') if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    out.append({'method': request.method, 'url': request.url, 'headers': headers})
    return AWSResponse(request.url, 500, {}, None)
s3.meta.events.register('before-send.s3', capture)
for call in spec['calls']:
    try:
        getattr(s3, call['op'])(**call['args'])
    except Exception:
        pass
for p in spec['presign']:
    out.append({'method': p['method'], 'url': s3.generate_presigned_url(p['op'], Params=p['args'], ExpiresIn=p['expires'], HttpMethod=p['method'])})
print(json.dumps(out))
`;

interface BotoRequest { method: string; url: string; headers?: Record<string, string> }

function botoInput(r: BotoRequest): AuthInput {
  const m = /^https?:\/\/([^/]+)(.*)$/.exec(r.url)!;
  const headers: Record<string, string> = { host: m[1] };
  for (const [name, value] of Object.entries(r.headers ?? {})) headers[name.toLowerCase()] = value;
  return { method: r.method, url: m[2], headers };
}

t.test('requests signed and presigned by botocore verify', async (t) => {
  const spec = {
    endpoint: `http://${HOST}`, region: REGION, akid: CLIENT.accessKeyId, secret: CLIENT.secretAccessKey,
    calls: [
      { op: 'put_object', args: { Bucket: 'vb', Key: 'a/../b//c d+é~', Body: 'hi', Metadata: { m: '  x   y ' } } },
      { op: 'list_objects_v2', args: { Bucket: 'vb', Prefix: 'a b', Delimiter: '/' } },
      { op: 'get_bucket_location', args: { Bucket: 'vb' } },
      { op: 'create_multipart_upload', args: { Bucket: 'vb', Key: 'k' } },
      { op: 'get_object', args: { Bucket: 'vb', Key: 'ü', ResponseContentDisposition: 'attachment; filename="a b.txt"' } },
    ],
    presign: [
      { op: 'get_object', method: 'GET', args: { Bucket: 'vb', Key: 'a b+c/é/../x' }, expires: 600 },
      { op: 'put_object', method: 'PUT', args: { Bucket: 'vb', Key: 'up load' }, expires: 604800 },
      { op: 'list_objects_v2', method: 'GET', args: { Bucket: 'vb', Prefix: 'p q/', Delimiter: '/' }, expires: 60 },
    ],
  };
  const res = await run(python(), ['-c', BOTO, JSON.stringify(spec)], { timeoutMs: 120_000 });
  t.equal(res.status, 0, res.stderr.slice(-2000));
  const requests = JSON.parse(res.stdout) as BotoRequest[];
  t.equal(requests.length, spec.calls.length + spec.presign.length, 'botocore produced every request');

  for (const r of requests) {
    const input = botoInput(r);
    const date = (r.headers?.['X-Amz-Date'] ?? /X-Amz-Date=(\d{8}T\d{6}Z)/.exec(r.url)?.[1])!;
    const at = Date.UTC(+date.slice(0, 4), +date.slice(4, 6) - 1, +date.slice(6, 8), +date.slice(9, 11), +date.slice(11, 13), +date.slice(13, 15));
    accepts(t, authenticator(at + 30_000), input, `botocore ${r.method} ${input.url.slice(0, 80)}`);
    if (r.headers === undefined) {
      const expires = Number(/X-Amz-Expires=(\d+)/.exec(r.url)![1]);
      rejects(t, () => authenticator(at + expires * 1000 + 1000).authenticate(input), 'AccessDenied', 403, /^Request has expired$/,
        `botocore presigned URL after ${expires} s`);
    } else {
      rejects(t, () => authenticator(at).authenticate({ ...input, method: input.method === 'GET' ? 'HEAD' : 'GET' }),
        'SignatureDoesNotMatch', 403, undefined, `botocore ${r.method} with another method`);
    }
  }
});

// ---------------------------------------------------------------- refusals

t.test('anonymous requests', async (t) => {
  const input: AuthInput = { method: 'GET', url: '/vb/k?prefix=x', headers: { host: HOST } };
  t.same(authenticator(T0, true).authenticate(input), { accessKeyId: null }, 'allowed when configured');
  rejects(t, () => authenticator(T0).authenticate(input), 'AccessDenied', 403, /^Access Denied\.$/, 'refused otherwise');
  const bad = setAuthorization(await signed({ path: '/vb/k' }), (s) => s.replace(/Signature=\w+/, 'Signature=' + '0'.repeat(64)));
  rejects(t, () => authenticator(T0, true).authenticate(bad), 'SignatureDoesNotMatch', 403, undefined,
    'a bad signature is refused even where anonymous requests are allowed');
});

t.test('clock skew', async (t) => {
  const input = await signed({ path: '/vb/k' });
  for (const minutes of [-14, 14]) accepts(t, authenticator(T0 + minutes * MIN), input, `${minutes} min`);
  for (const minutes of [-16, 16]) {
    rejects(t, () => authenticator(T0 + minutes * MIN).authenticate(input), 'RequestTimeTooSkewed', 403, undefined, `${minutes} min`);
  }
  rejects(t, () => authenticator(T0).authenticate(clone(input, (i) => { delete i.headers['x-amz-date']; })),
    'AccessDenied', 403, /valid Date or x-amz-date/, 'no date at all');
  rejects(t, () => authenticator(T0).authenticate(clone(input, (i) => { i.headers['x-amz-date'] = '20261322T100000Z'; })),
    'AccessDenied', 403, /valid Date or x-amz-date/, 'an impossible x-amz-date');
});

t.test('presigned expiry and validity window', async (t) => {
  const input = await presigned({ path: '/vb/k' }, 600);
  accepts(t, authenticator(T0 + 599_000), input, 'just before expiry');
  accepts(t, authenticator(T0 + 7 * 24 * 60 * MIN), await presigned({ path: '/vb/k' }, 604800), 'a week-long URL on its last second');
  rejects(t, () => authenticator(T0 + 601_000).authenticate(input), 'AccessDenied', 403, /^Request has expired$/, 'just after expiry');
  accepts(t, authenticator(T0 - 14 * MIN), input, 'signed 14 min in the future');
  rejects(t, () => authenticator(T0 - 16 * MIN).authenticate(input), 'AccessDenied', 403, /not yet valid/, 'signed 16 min in the future');
  const longer = setQuery(input, (q) => q.replace('X-Amz-Expires=600', 'X-Amz-Expires=6000'));
  rejects(t, () => authenticator(T0).authenticate(longer), 'SignatureDoesNotMatch', 403, undefined, 'a lengthened expiry');
  for (const [value, why] of [['0', 'zero'], ['604801', 'over a week'], ['abc', 'not a number'], ['-5', 'negative']]) {
    rejects(t, () => authenticator(T0).authenticate(setQuery(input, (q) => q.replace('X-Amz-Expires=600', `X-Amz-Expires=${value}`))),
      'AuthorizationQueryParametersError', 400, /X-Amz-Expires/, `X-Amz-Expires ${why}`);
  }
});

t.test('malformed presigned queries', async (t) => {
  const a = authenticator(T0);
  const input = await presigned({ path: '/vb/k', query: { prefix: 'p' } });
  for (const name of ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature']) {
    rejects(t, () => a.authenticate(setQuery(input, (q) => q.split('&').filter((p) => !p.startsWith(name + '=')).join('&'))),
      'AuthorizationQueryParametersError', 400, /requires the X-Amz-Algorithm/, `without ${name}`);
  }
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('X-Amz-Algorithm=AWS4-HMAC-SHA256', 'X-Amz-Algorithm=AWS4-HMAC-SHA1'))),
    'AuthorizationQueryParametersError', 400, /only supports/, 'another algorithm');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('X-Amz-Date=20261122T100000Z', 'X-Amz-Date=2026-11-22'))),
    'AuthorizationQueryParametersError', 400, /ISO8601/, 'a malformed X-Amz-Date');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace(`%2F${REGION}%2F`, '%2Fap-south-1%2F'))),
    'AuthorizationQueryParametersError', 400, new RegExp(`region 'ap-south-1' is wrong; expecting '${REGION}'`), 'wrong region');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('%2Fs3%2F', '%2Fiam%2F'))),
    'AuthorizationQueryParametersError', 400, /incorrect service "iam"/, 'wrong service');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('%2F20261122%2F', '%2F20261121%2F'))),
    'AuthorizationQueryParametersError', 400, /credential date/, 'credential date not the X-Amz-Date');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('%2Faws4_request', ''))),
    'AuthorizationQueryParametersError', 400, /Credential is mal-formed/, 'short credential');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('prefix=p', 'prefix=q'))),
    'SignatureDoesNotMatch', 403, undefined, 'tampered query value');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q + '&versionId=1')),
    'SignatureDoesNotMatch', 403, undefined, 'added query parameter');
  rejects(t, () => a.authenticate({ ...input, url: input.url.replace('/vb/k', '/vb/other') }),
    'SignatureDoesNotMatch', 403, undefined, 'tampered path');
  rejects(t, () => a.authenticate(setQuery(input, (q) => q.replace('X-Amz-SignedHeaders=host', 'X-Amz-SignedHeaders=x-amz-date'))),
    'AccessDenied', 403, /not signed/, 'host left out of X-Amz-SignedHeaders');
  rejects(t, () => a.authenticate(clone(input, (i) => { i.headers['x-amz-copy-source'] = '/vb/secret'; })),
    'AccessDenied', 403, /not signed/, 'an x-amz- header added to a presigned request');
  rejects(t, () => a.authenticate(clone(input, (i) => { i.headers.authorization = 'AWS4-HMAC-SHA256 Credential=x'; })),
    'InvalidArgument', 400, /Only one auth mechanism/, 'presigned and an Authorization header');
});

t.test('malformed and forged Authorization headers', async (t) => {
  const a = authenticator(T0);
  const input = await signed({ method: 'PUT', path: '/vb/k', query: { tagging: '' }, headers: { 'x-amz-content-sha256': EMPTY_SHA256, 'content-type': 'text/plain' } });
  accepts(t, a, input, 'the unmodified request');

  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s.replace(/, Signature=\w+/, ''))),
    'AuthorizationHeaderMalformed', 400, /three components/, 'no Signature');
  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s + ', Extra=1')),
    'AuthorizationHeaderMalformed', 400, /three components/, 'an extra component');
  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s.replace('/aws4_request', ''))),
    'AuthorizationHeaderMalformed', 400, /Credential is mal-formed/, 'short credential');
  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s.replace('/20261122/', '/20261121/'))),
    'AuthorizationHeaderMalformed', 400, /credential date/, 'credential date not the x-amz-date');
  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s.replace('/aws4_request', '/aws4_reques'))),
    'AuthorizationHeaderMalformed', 400, /incorrect terminal "aws4_reques"/, 'wrong terminal');
  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k' }, { region: 'ap-south-1' })),
    'AuthorizationHeaderMalformed', 400, new RegExp(`region 'ap-south-1' is wrong; expecting '${REGION}'`), 'wrong region');
  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k' }, { service: 'iam' })),
    'AuthorizationHeaderMalformed', 400, /incorrect service "iam"/, 'wrong service');

  rejects(t, () => a.authenticate(clone(input, (i) => { i.headers.authorization = 'Bearer abc'; })),
    'InvalidArgument', 400, /Unsupported Authorization Type/, 'another scheme');
  rejects(t, () => a.authenticate(clone(input, (i) => { i.headers.authorization = 'AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg='; })),
    'InvalidRequest', 400, /Please use AWS4-HMAC-SHA256/, 'SigV2 header');
  rejects(t, () => a.authenticate({ method: 'GET', url: '/vb/k?AWSAccessKeyId=AKIDEXAMPLE&Expires=1795000000&Signature=abc%3D', headers: { host: HOST } }),
    'InvalidRequest', 400, /Please use AWS4-HMAC-SHA256/, 'SigV2 query');

  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k' }, { applyChecksum: false })),
    'InvalidRequest', 400, /^Missing required header for this request: x-amz-content-sha256$/, 'no x-amz-content-sha256');
  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k', headers: { 'x-amz-content-sha256': 'nope' } })),
    'InvalidArgument', 400, /x-amz-content-sha256 must be/, 'a payload hash that is none of the allowed forms');

  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k' }, { credentials: { accessKeyId: 'AKIDUNKNOWN', secretAccessKey: 's' } })),
    'InvalidAccessKeyId', 403, undefined, 'unknown access key');
  rejects(t, a.authenticate.bind(a, await signed({ path: '/vb/k' }, { credentials: { ...CLIENT, secretAccessKey: 'wrong' } })),
    'SignatureDoesNotMatch', 403, undefined, 'wrong secret');

  const forged: [string, AuthInput][] = [
    ['tampered path', { ...input, url: input.url.replace('/vb/k', '/vb/K') }],
    ['tampered method', { ...input, method: 'DELETE' }],
    ['query parameter dropped', { ...input, url: input.url.replace('?tagging=', '') }],
    ['query parameter added', { ...input, url: input.url + '&versionId=1' }],
    ['signed header changed', clone(input, (i) => { i.headers['content-type'] = 'text/html'; })],
    ['signed header removed', clone(input, (i) => { delete i.headers['content-type']; })],
    ['payload hash changed', clone(input, (i) => { i.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'; })],
    ['host changed', clone(input, (i) => { i.headers.host = 'elsewhere:9000'; })],
    ['a header dropped from SignedHeaders', setAuthorization(input, (s) => s.replace('content-type;', ''))],
    ['a header added to SignedHeaders', clone(setAuthorization(input, (s) => s.replace('SignedHeaders=', 'SignedHeaders=accept;')),
      (i) => { i.headers.accept = '*/*'; })],
    ['signature not hex', setAuthorization(input, (s) => s.replace(/Signature=\w+/, 'Signature=zz'))],
    ['signature truncated', setAuthorization(input, (s) => s.slice(0, -2))],
  ];
  for (const [name, bad] of forged) rejects(t, () => a.authenticate(bad), 'SignatureDoesNotMatch', 403, undefined, name);

  rejects(t, () => a.authenticate(setAuthorization(input, (s) => s.replace('host;', ''))),
    'AccessDenied', 403, /not signed/, 'host left out of SignedHeaders');
  rejects(t, () => a.authenticate(clone(setAuthorization(input, (s) => s.replace('host;', '')), (i) => { delete i.headers.host; })),
    'AccessDenied', 403, /not signed/, 'no host header and none signed');
  rejects(t, () => a.authenticate(clone(input, (i) => { i.headers['x-amz-acl'] = 'public-read'; })),
    'AccessDenied', 403, /not signed/, 'an unsigned x-amz- header added');
});

t.test('signing keys stay right past the cache bound', async (t) => {
  const day = 24 * 60 * MIN;
  const inputs: [number, AuthInput][] = [];
  for (let i = 0; i < 70; i++) inputs.push([T0 + i * day, await signed({ path: `/vb/${i}` }, {}, T0 + i * day)]);
  let now = T0;
  const a = new Authenticator({ clients: [CLIENT], regions: [REGION], allowAnonymous: false, now: () => now });
  let ok = 0;
  for (const [at, input] of [...inputs, ...inputs.slice(0, 3)]) {
    now = at;
    if (a.authenticate(input).accessKeyId === CLIENT.accessKeyId) ok++;
  }
  t.equal(ok, 73, 'seventy days of keys, then the evicted first ones again');
  now = T0 + 3 * day;
  rejects(t, () => a.authenticate(inputs[2][1]), 'RequestTimeTooSkewed', 403, undefined, 'the clock still applies');
});
