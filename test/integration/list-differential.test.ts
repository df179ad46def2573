import t from 'tap';
import { join } from 'node:path';
import { Client } from 'minio';
import {
  S3Client, PutObjectCommand, CreateBucketCommand, ListObjectsV2Command, ListObjectVersionsCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { python } from '../helpers/python';
import { run } from '../helpers/run';
import { channels } from '../../lib/events';

// The same keys written once through the proxy (three shards) and once into
// one plain MinIO bucket: every listing variant, paged small, must answer
// the same through the proxy as directly.

// No key here is a prefix-with-slash of another object key ('p' and 'p/c'):
// one MinIO bucket cannot hold both, while two shards can.
const KEYS: string[] = [];
for (const tenant of ['tenant-a', 'tenant-b']) {
  for (let b = 0; b < 40; b++) {
    for (const f of ['meta.json', 'data.parquet', 'bloom-0', 'bloom-1', 'index']) KEYS.push(`${tenant}/blk-${b}/${f}`);
  }
  KEYS.push(`${tenant}/index.json.gz`);
}
KEYS.push('tempo_cluster_seed.json', 'a+b/c d/e', 'sp ace/x y/z', 'uü/ñ/日本', 'u\u{1F600}/x/y', 'uz/ascii/after',
  'dash-one', 'dash-two/x', 'trail/', 'index/index_19700/fake/1-node-1.tsdb.gz',
  'fake/a1b2/17000:17001:abc');

interface Page { keys: [string, number, string][]; prefixes: string[]; truncated: boolean; key_count?: number }
interface Walk { variant: { max_keys: number; version: number }; pages: Page[] }

// Everything a walk listed, in order: keys and prefixes interleaved by name.
function listed(w: Walk): string[] {
  return w.pages.flatMap((p) => [...p.keys.map((k) => `K:${k[0]}:${k[1]}:${k[2]}`), ...p.prefixes.map((x) => `P:${x}`)]
    .sort((x, y) => Buffer.compare(Buffer.from(x.slice(2)), Buffer.from(y.slice(2)))));
}

async function putAll(client: S3Client, bucket: string): Promise<void> {
  for (let i = 0; i < KEYS.length; i += 50) {
    await Promise.all(KEYS.slice(i, i + 50).map((Key) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }))));
  }
}

t.test('listings through the proxy equal one plain bucket', async (t) => {
  const stack = await startStack(t);
  const viaProxy = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => viaProxy.destroy());
  await stack.direct.send(new CreateBucketCommand({ Bucket: 'single' }));
  await putAll(viaProxy, 'proxy-bucket');
  await putAll(stack.direct, 'single');
  const spread = await stack.shardContents();
  t.ok([...spread.values()].every((keys) => keys.length > 50), 'the keys are spread over the three shards');

  await t.test('boto3: V1 and V2, prefixes, delimiters, start-after, page sizes', async (t) => {
    const script = join(__dirname, '..', 'clients', 'boto3_listings.py');
    const [proxied, plain] = await Promise.all([
      run(python(), [script, stack.endpoint, 'proxy-bucket', CREDENTIALS.accessKeyId, CREDENTIALS.secretAccessKey]),
      run(python(), [script, stack.minio.endpoint, 'single', CREDENTIALS.accessKeyId, CREDENTIALS.secretAccessKey]),
    ]);
    t.equal(proxied.status, 0, proxied.stderr.slice(-2000));
    t.equal(plain.status, 0, plain.stderr.slice(-2000));
    const a = JSON.parse(proxied.stdout) as Walk[];
    const b = JSON.parse(plain.stdout) as Walk[];
    t.equal(a.length, b.length);
    for (let i = 0; i < b.length; i++) {
      const name = JSON.stringify(b[i].variant);
      const { max_keys: max, version } = a[i].variant;
      // S3 answers max-keys=0 with nothing; MinIO sometimes lists a prefix anyway.
      if (max > 0) t.same(listed(a[i]), listed(b[i]), `${name}: the same entries, in the same order`);
      // MinIO fills pages loosely (a page of 6 when 7 were asked, a last page
      // marked truncated); the proxy pages exactly as S3 specifies.
      const pages = a[i].pages;
      const exact = pages.every((p, j) => {
        const n = p.keys.length + p.prefixes.length;
        const last = j === pages.length - 1;
        return p.truncated === !last && (last ? n <= max : n === max) && (version === 1 || p.key_count === n);
      });
      t.ok(exact, `${name}: ${pages.length} full pages, truncated on all but the last, KeyCount exact`);
    }
  });

  await t.test('aws-sdk-js: ListObjectVersions and ListMultipartUploads, paged', async (t) => {
    const walkVersions = async (client: S3Client, Bucket: string, Prefix: string, Delimiter?: string) => {
      const out: string[] = [];
      let KeyMarker: string | undefined;
      let VersionIdMarker: string | undefined;
      for (let i = 0; i < 1000; i++) {
        const page = await client.send(new ListObjectVersionsCommand({ Bucket, Prefix, Delimiter, MaxKeys: 9, KeyMarker, VersionIdMarker }));
        out.push(...(page.Versions ?? []).map((v) => `V:${v.Key}:${v.Size}:${v.IsLatest}`), ...(page.CommonPrefixes ?? []).map((p) => `P:${p.Prefix}`));
        if (!page.IsTruncated) break;
        KeyMarker = page.NextKeyMarker;
        VersionIdMarker = page.NextVersionIdMarker;
      }
      return out.sort((a, b) => Buffer.compare(Buffer.from(a.slice(2)), Buffer.from(b.slice(2))));
    };
    for (const [prefix, delimiter] of [['tenant-a/', undefined], ['', '/'], ['tenant-b/blk-1', '/']] as const) {
      t.same(await walkVersions(viaProxy, 'proxy-bucket', prefix, delimiter), await walkVersions(stack.direct, 'single', prefix, delimiter),
        `versions ${JSON.stringify(prefix)} delimiter ${JSON.stringify(delimiter ?? '')}`);
    }
    const keys = ['tenant-a/blk-1/data.parquet', 'tenant-b/blk-7/data.parquet', 'tenant-b/blk-9/data.parquet'];
    for (const Key of keys) {
      await viaProxy.send(new CreateMultipartUploadCommand({ Bucket: 'proxy-bucket', Key }));
      await stack.direct.send(new CreateMultipartUploadCommand({ Bucket: 'single', Key }));
    }
    const uploads = async (client: S3Client, Bucket: string) => {
      const out: string[] = [];
      let KeyMarker: string | undefined;
      let UploadIdMarker: string | undefined;
      for (let i = 0; i < 100; i++) {
        const page = await client.send(new ListMultipartUploadsCommand({ Bucket, MaxUploads: 2, KeyMarker, UploadIdMarker }));
        out.push(...(page.Uploads ?? []).map((u) => u.Key!));
        if (!page.IsTruncated) break;
        KeyMarker = page.NextKeyMarker;
        UploadIdMarker = page.NextUploadIdMarker;
      }
      return out;
    };
    t.same(await uploads(viaProxy, 'proxy-bucket'), await uploads(stack.direct, 'single'), 'open uploads, two per page');
    t.same(await uploads(viaProxy, 'proxy-bucket'), keys);
  });

  await t.test('minio-js: listObjects and listObjectsV2 streams', async (t) => {
    const client = (endPoint: string) => {
      const u = new URL(endPoint);
      return new Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: CREDENTIALS.accessKeyId, secretKey: CREDENTIALS.secretAccessKey, region: 'us-east-1', pathStyle: true });
    };
    const collect = (s: NodeJS.ReadableStream) => new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      s.on('data', (o: { name?: string; prefix?: string }) => out.push(o.name ?? `P:${o.prefix}`));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
    const p = client(stack.endpoint);
    const d = client(stack.minio.endpoint);
    for (const [prefix, recursive] of [['', false], ['', true], ['tenant-a/', false], ['tenant-b/blk-3', true], ['u', false]] as const) {
      t.same(await collect(p.listObjects('proxy-bucket', prefix, recursive)), await collect(d.listObjects('single', prefix, recursive)),
        `listObjects ${JSON.stringify(prefix)} recursive=${recursive}`);
      t.same(await collect(p.listObjectsV2('proxy-bucket', prefix, recursive)), await collect(d.listObjectsV2('single', prefix, recursive)),
        `listObjectsV2 ${JSON.stringify(prefix)} recursive=${recursive}`);
    }
  });

  await t.test('paging on goes on with each shard\'s own listing, not three new ones a page', async (t) => {
    let backendPages = 0;
    const count = () => { backendPages += 1; };
    channels.listPage.subscribe(count);
    t.teardown(() => channels.listPage.unsubscribe(count));
    const walk = async (client: S3Client, Bucket: string) => {
      const keys: string[] = [];
      let pages = 0;
      let ContinuationToken: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket, MaxKeys: 10, ContinuationToken }));
        pages += 1;
        keys.push(...(page.Contents ?? []).map((c) => c.Key!));
        ContinuationToken = page.NextContinuationToken;
      } while (ContinuationToken);
      return { keys, pages };
    };
    const proxied = await walk(viaProxy, 'proxy-bucket');
    t.same(proxied.keys, (await walk(stack.direct, 'single')).keys);
    // Starting every shard over after each page's last key would take at
    // least three backend pages per page.
    t.ok(backendPages < 2 * proxied.pages, `${backendPages} backend pages for ${proxied.pages} pages`);
  });
});
