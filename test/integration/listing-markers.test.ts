import t from 'tap';
import { request } from 'undici';
import aws4 from 'aws4';
import {
  S3Client, PutObjectCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand,
} from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';

// Version and upload listings page by key-marker, where MinIO has two habits:
// a page that ends on a common prefix names that prefix as its next marker
// (asked again, it answers the same page), and the uploads of a single key
// come with an empty NextKeyMarker.

const Bucket = 'proxy-bucket';

t.test('version and upload listings page on through MinIO\'s markers', async (t) => {
  const stack = await startStack(t);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  // Tempo's layout: a tenant whose name holds the delimiter "-" used below, and one whose does not.
  const blocks = Array.from({ length: 6 }, (_, b) => `${b.toString(16).padStart(8, '0')}-1111-2222-3333-444455556666`);
  const keys = [
    ...blocks.flatMap((b) => ['meta.json', 'data', 'bloom-0', 'index'].map((f) => `single-tenant/${b}/${f}`)),
    ...Array.from({ length: 6 }, (_, i) => `tenant/b${i}/meta`),
  ];
  await Promise.all(keys.map((Key) => s3.send(new PutObjectCommand({ Bucket, Key, Body: 'v' }))));

  await t.test('a version listing that ends a page on a prefix goes on after it', async (t) => {
    // The page a walk with delimiter "-" and one key a page asks for second.
    const path = `/${Bucket}?versions=&max-keys=1&delimiter=-&key-marker=single-`;
    const headers = aws4.sign({ service: 's3', region: 'us-east-1', method: 'GET', host: new URL(stack.endpoint).host, path,
      headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, CREDENTIALS).headers as Record<string, string>;
    const r = await request(`${stack.endpoint}${path}`, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
    t.equal(r.statusCode, 200, 'answered');
    t.match(await r.body.text(), '<Key>tenant/b0/meta</Key>', 'with what follows the prefix');

    const seen: string[] = [];
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    for (let page = 0; page < 30; page++) {
      const out = await s3.send(new ListObjectVersionsCommand({ Bucket, Delimiter: '-', MaxKeys: 1, KeyMarker, VersionIdMarker }));
      seen.push(...(out.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(out.Versions ?? []).map((v) => v.Key!));
      if (!out.IsTruncated) break;
      ({ NextKeyMarker: KeyMarker, NextVersionIdMarker: VersionIdMarker } = out);
    }
    t.same(seen, ['single-', ...keys.filter((k) => k.startsWith('tenant/'))], 'a walk with one entry a page ends, each entry once');
  });

  await t.test('the uploads of one key, a page at a time', async (t) => {
    const Key = 'rep/blk/data';
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add((await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId!);
    const listed: string[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (let page = 0; page < 10; page++) {
      const out = await s3.send(new ListMultipartUploadsCommand({ Bucket, Prefix: Key, MaxUploads: 2, KeyMarker, UploadIdMarker }));
      listed.push(...(out.Uploads ?? []).map((u) => u.UploadId!));
      if (!out.IsTruncated) break;
      ({ NextKeyMarker: KeyMarker, NextUploadIdMarker: UploadIdMarker } = out);
    }
    t.same([...listed].sort(), [...ids].sort(), 'every upload, each once');
  });
});
