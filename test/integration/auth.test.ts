import t from 'tap';
import type { Test } from 'tap';
import { createHmac, createHash } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'undici';
import aws4 from 'aws4';
import { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, HeadObjectCommand, CreateBucketCommand,
  GetObjectTaggingCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { python } from '../helpers/python';
import { run } from '../helpers/run';
import { buildMinioGo, pinnedVersion } from '../minio-go/build';

// With clients configured, nothing unauthenticated reaches a backend.
// Good cases are signed by the SDKs themselves; bad ones are crafted.

const CLIENT = { accessKeyId: 'tempo-client', secretAccessKey: 'tempo-client-secret-0123456789' };
const Bucket = 'proxy-bucket';

t.test('client authentication', async (t) => {
  const stack = await startStack(t, { extra: { clients: [{ access_key_id: CLIENT.accessKeyId, secret_access_key: CLIENT.secretAccessKey }] } });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CLIENT });
  t.teardown(() => s3.destroy());

  const backendRequests = async () => {
    const text = await request(`${stack.endpoint}/metrics`).then((r) => r.body.text());
    return [...text.matchAll(/^tempo_s3_shard_backend_requests_total\{shard="[^"]+",operation="([^"]+)",status="[^"]+"\} (\d+)$/gm)]
      .filter((m) => m[1] !== 'HeadBucket').reduce((sum, m) => sum + Number(m[2]), 0);
  };

  await t.test('SDK-signed requests pass: aws-sdk-js, presigned URLs, boto3', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/auth/ok', Body: 'signed' }));
    const got = await s3.send(new GetObjectCommand({ Bucket, Key: 'tenant/auth/ok' }));
    t.equal(await got.Body!.transformToString(), 'signed');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'tenant/' }));
    t.same(listed.Contents?.map((c) => c.Key), ['tenant/auth/ok']);
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: 'tenant/auth/ok' }), { expiresIn: 60 });
    const presigned = await request(url);
    t.equal(presigned.statusCode, 200);
    t.equal(await presigned.body.text(), 'signed');
    const boto = await run(python(), [join(__dirname, '..', 'clients', 'boto3_objects.py'), stack.endpoint, CLIENT.accessKeyId, CLIENT.secretAccessKey]);
    t.equal(boto.status, 0, 'the boto3 round trips pass with the client key: ' + boto.stderr.slice(-500));
    // minio-go signs PUTs chunk by chunk over HTTP and its region lookup for us-east-1.
    const bin = await buildMinioGo(pinnedVersion());
    const go = await run(bin, ['-endpoint', new URL(stack.endpoint).host, '-access', CLIENT.accessKeyId, '-secret', CLIENT.secretAccessKey,
      '-bucket', Bucket, '-region', '']);
    const failed = go.stdout.split('\n').filter((l) => l.includes('"ok":false'));
    t.same(failed, [], 'every minio-go check passes with the client key');
    t.equal(go.status, 0, go.stderr.slice(-500));
  });

  // The AWS SDK's presigner moves metadata and tags into the query; S3 reads them as headers.
  await t.test('a presigned PUT keeps the metadata and tags of its query', async (t) => {
    const Key = 'tenant/auth/presigned-put';
    const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key, Metadata: { owner: 'alice', city: 'Zoë' }, Tagging: 'k=v' }),
      { expiresIn: 60 });
    t.match(url, /x-amz-meta-owner=alice/, 'the metadata rides in the query');
    const put = await request(url, { method: 'PUT', body: 'presigned' });
    t.equal(put.statusCode, 200, await put.body.text());
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
    t.equal(head.Metadata?.owner, 'alice', 'metadata stored');
    t.ok(head.Metadata?.city, 'non-ASCII metadata stored');
    const tags = await s3.send(new GetObjectTaggingCommand({ Bucket, Key }));
    t.same(tags.TagSet, [{ Key: 'k', Value: 'v' }], 'tags stored');
  });

  // The client signs the UTF-8 text; the bytes reach the proxy one latin1
  // character each, are checked, re-signed for the shard and sent on as they
  // came. The same PUT straight to MinIO says what should be stored.
  await t.test('UTF-8 header values pass, signed by the client and again for the shard', async (t) => {
    const put = async (endpoint: string, path: string, value: string, credentials: { accessKeyId: string; secretAccessKey: string }) => {
      const signed = aws4.sign({
        host: new URL(endpoint).host, path, method: 'PUT', service: 's3', region: 'us-east-1', body: 'x',
        headers: { 'x-amz-meta-v': value, 'content-disposition': `attachment; filename="${value}.pdf"`, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
      }, credentials);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(signed.headers!)) headers[k] = Buffer.from(String(v), 'utf8').toString('latin1');
      const r = await request(`${endpoint}${path}`, { method: 'PUT', headers, body: 'x' });
      return { status: r.statusCode, text: await r.body.text() };
    };
    const direct = new S3Client({ endpoint: stack.minio.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
    t.teardown(() => direct.destroy());
    await direct.send(new CreateBucketCommand({ Bucket: 'utf8-direct' }));
    for (const value of ['voilà', 'Škoda 日本', 'a\u00a0b']) {
      const there = await put(stack.minio.endpoint, '/utf8-direct/v', value, CREDENTIALS);
      t.equal(there.status, 200, `${JSON.stringify(value)}: MinIO takes it directly`);
      const here = await put(stack.endpoint, `/${Bucket}/tenant/auth/utf8`, value, CLIENT);
      t.equal(here.status, 200, `${JSON.stringify(value)}: the proxy takes it (${here.text.slice(0, 200)})`);
      const expected = await direct.send(new HeadObjectCommand({ Bucket: 'utf8-direct', Key: 'v' }));
      const got = await s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/auth/utf8' }));
      t.same([got.Metadata?.v, got.ContentDisposition], [expected.Metadata?.v, expected.ContentDisposition],
        `${JSON.stringify(value)}: stored as MinIO stores it directly`);
    }
  });

  const before = await backendRequests();
  const expectRefused = async (t: Test, name: string, r: { statusCode: number; body: { text(): Promise<string> } }, status: number, code: string) => {
    const text = await r.body.text();
    t.equal(r.statusCode, status, `${name}: ${status}`);
    t.match(text, `<Code>${code}</Code>`, `${name}: ${code}`);
  };

  await t.test('crafted bad requests are refused with S3 errors', async (t) => {
    const url = `${stack.endpoint}/${Bucket}/tenant/auth/ok`;
    await expectRefused(t, 'anonymous', await request(url), 403, 'AccessDenied');

    const sign = (creds: typeof CLIENT, extra: Record<string, string> = {}, region = 'us-east-1') => aws4.sign({
      service: 's3', region, method: 'GET', host: new URL(stack.endpoint).host, path: `/${Bucket}/tenant/auth/ok`,
      headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...extra },
    }, creds).headers as Record<string, string>;
    await expectRefused(t, 'unknown key', await request(url, { headers: sign({ ...CLIENT, accessKeyId: 'nobody' }) }), 403, 'InvalidAccessKeyId');
    await expectRefused(t, 'wrong secret', await request(url, { headers: sign({ ...CLIENT, secretAccessKey: 'wrong' }) }), 403, 'SignatureDoesNotMatch');
    const tampered = sign(CLIENT);
    await expectRefused(t, 'tampered path', await request(`${stack.endpoint}/${Bucket}/tenant/auth/other`, { headers: tampered }), 403, 'SignatureDoesNotMatch');
    const old = new Date(Date.now() - 20 * 60_000).toISOString().replace(/[:-]|\.\d{3}/g, '');
    await expectRefused(t, 'skewed clock', await request(url, { headers: sign(CLIENT, { 'x-amz-date': old }) }), 403, 'RequestTimeTooSkewed');
    await expectRefused(t, 'foreign region', await request(url, { headers: sign(CLIENT, {}, 'eu-central-1') }), 400, 'AuthorizationHeaderMalformed');
    const expired = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: 'tenant/auth/ok' }), { expiresIn: 1 });
    await new Promise((r) => setTimeout(r, 2100));
    await expectRefused(t, 'expired presigned URL', await request(expired), 403, 'AccessDenied');
    const head = await request(url, { method: 'HEAD', headers: sign({ ...CLIENT, secretAccessKey: 'wrong' }) });
    t.equal(head.statusCode, 403, 'HEAD refused');
    t.equal(await head.body.text(), '', 'HEAD errors carry no body');
    // boto3's generate_presigned_url and AWS CLI v1's presign sign with V2 unless told otherwise.
    const v2 = await request(`${url}?AWSAccessKeyId=${CLIENT.accessKeyId}&Expires=${Math.floor(Date.now() / 1000) + 60}&Signature=abc%3D`);
    t.equal(v2.statusCode, 400, 'a SigV2 presigned URL: 400');
    t.match(await v2.body.text(), /<Code>InvalidRequest<\/Code><Message>[^<]*Please use AWS4-HMAC-SHA256/, 'naming the signature to use');
    const long = await request(`${stack.endpoint}/${Bucket}/${'k'.repeat(1100)}`, { headers: sign(CLIENT) });
    t.equal(long.statusCode, 400);
    t.match(await long.body.text(), `<Resource>/${Bucket}/kkk`, 'an unparsable request\'s error names its path');
  });

  await t.test('a bad chunk signature aborts the upload: nothing stored', async (t) => {
    const data = Buffer.alloc(100_000, 1);
    const host = new URL(stack.endpoint).host;
    const path = `/${Bucket}/tenant/auth/chunked`;
    const signed = aws4.sign({
      service: 's3', region: 'us-east-1', method: 'PUT', host, path,
      headers: {
        'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
        'x-amz-decoded-content-length': String(data.length),
        'content-encoding': 'aws-chunked',
      },
    }, CLIENT).headers as Record<string, string>;
    const amzDate = signed['X-Amz-Date'];
    const scope = `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`;
    const seed = /Signature=([0-9a-f]{64})/.exec(signed.Authorization)![1];
    const key = ['us-east-1', 's3', 'aws4_request'].reduce((k, part) => createHmac('sha256', k).update(part).digest(),
      createHmac('sha256', 'AWS4' + CLIENT.secretAccessKey).update(amzDate.slice(0, 8)).digest());
    const empty = createHash('sha256').update('').digest('hex');
    let prev = seed;
    const frames: Buffer[] = [];
    for (const chunk of [data.subarray(0, 65536), data.subarray(65536), Buffer.alloc(0)]) {
      let sig = createHmac('sha256', key).update(['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, prev, empty,
        createHash('sha256').update(chunk).digest('hex')].join('\n')).digest('hex');
      if (chunk.length && chunk.length < 65536) sig = sig.replace(/^./, (c) => (c === '0' ? '1' : '0'));
      prev = sig;
      frames.push(Buffer.from(`${chunk.length.toString(16)};chunk-signature=${sig}\r\n`), chunk, Buffer.from('\r\n'));
    }
    const body = Buffer.concat(frames);
    const r = await request(`${stack.endpoint}${path}`, { method: 'PUT', headers: { ...signed, 'content-length': String(body.length) }, body });
    await expectRefused(t, 'bad second chunk', r, 403, 'SignatureDoesNotMatch');
    const contents = await stack.shardContents();
    t.notOk([...contents.values()].flat().includes('tenant/auth/chunked'), 'no object was stored');
  });

  const after = await backendRequests();
  t.equal(after - before, 0, 'no rejected request got an answer from a backend');
});
