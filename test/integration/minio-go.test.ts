import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startStack } from '../helpers/stack';
import { buildMinioGo, minioGoVersions } from '../minio-go/build';
import { Ring } from '../../lib/ring';

// The Go program in test/minio-go drives S3 with minio-go exactly as Tempo and
// Loki do (aws-chunked PUTs over HTTP, 16 MiB multipart, V1/V2 listing loops,
// off-by-one ranges, conditional PUTs, ...) and prints one JSON line per check.
// It must pass against a plain MinIO bucket first — that proves the program —
// and then through the proxy, for the minio-go Tempo pins and the newest one.

interface Check { check: string; ok: boolean; detail: string }
interface Run { checks: Check[]; status: number | null; stderr: string; junk: string[] }

// Checks whose absence would mean a whole area silently did not run.
const REQUIRED = [
  'setup', 'put/size-0', 'put/size-5242880', 'multipart/putobject-16MiB-parts', 'multipart/core-upload',
  'multipart/abort', 'range/tempo-footer', 'range/suffix-10', 'list-v1/tenants', 'list-v1/blocks-single-tenant',
  'list-v2/listblocks-single-tenant', 'list-v2/find', 'list/recursive-v1', 'copy/mark-compacted', 'copy/replace-tags',
  'delete/existing-and-missing', 'delete/batch-with-missing', 'hedged-reads', 'loki/conditional-put',
  'loki/get-if-match', 'loki/list-tables-v2', 'region/location-lookup', 'trailer/put-crc32c-signed-chunks',
  'trailer/put-crc32c-unsigned',
];
const CLEANUP = ['cleanup/remove', 'cleanup/prefix-empty'];

// Asynchronous on purpose: the proxy under test runs in this process.
function runChecks(bin: string, endpoint: string, extra: string[]): Promise<Run> {
  const args = ['-endpoint', new URL(endpoint).host, '-access', MINIO_USER, '-secret', MINIO_PASSWORD,
    '-bucket', 'proxy-bucket', ...extra];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 480_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      const checks: Check[] = [];
      const junk: string[] = [];
      for (const line of stdout.split('\n').filter(Boolean)) {
        try { checks.push(JSON.parse(line) as Check); } catch { junk.push(line); }
      }
      resolve({ checks, status, stderr, junk });
    });
  });
}

function assertRun(t: Test, run: Run, required: string[]): void {
  for (const c of run.checks) t.ok(c.ok, `${c.check}: ${c.detail}`);
  const names = new Set(run.checks.map((c) => c.check));
  t.same(required.filter((n) => !names.has(n)), [], 'every area of checks ran');
  t.same(run.junk, [], 'only JSON lines on stdout');
  t.equal(run.status, 0, `exit code${run.stderr ? `; stderr: ${run.stderr}` : ''}`);
}

t.test('minio-go as Tempo and Loki use it', async (t) => {
  const builds: { version: string; bin: string }[] = [];
  await t.test('build the check program', async (t) => {
    for (const version of await minioGoVersions()) {
      builds.push({ version, bin: await buildMinioGo(version) });
      t.pass(`built against minio-go ${version}`);
    }
    t.ok(builds.length >= 1);
  });

  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const s3 = new S3Client({ endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD } });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'proxy-bucket' }));

  for (const { version, bin } of builds) {
    await t.test(`minio-go ${version} against a plain MinIO bucket`, async (t) => {
      assertRun(t, await runChecks(bin, minio.endpoint, []), [...REQUIRED, ...CLEANUP]);
    });
  }

  for (const { version, bin } of builds) {
    await t.test(`minio-go ${version} through the proxy`, async (t) => {
      // The run prefix plays Tempo's storage prefix, so blocks, Loki tables
      // and chunk series spread over the shards and listings must merge them.
      const prefix = `mgo-${randomBytes(6).toString('hex')}/`;
      const stack = await startStack(t, { extra: { hash_prefix: prefix } });
      assertRun(t, await runChecks(bin, stack.endpoint, ['-prefix', prefix, '-keep']), REQUIRED);

      const contents = await stack.shardContents();
      const ring = new Ring(stack.shards);
      for (const shard of stack.shards) {
        const mine = (contents.get(shard) ?? []).filter((k) => k.startsWith(prefix));
        t.ok(mine.length > 0, `${shard} holds ${mine.length} of the run's objects`);
        t.same(mine.filter((k) => ring.locate(k, prefix) !== shard), [], `every object in ${shard} belongs there`);
      }

      assertRun(t, await runChecks(bin, stack.endpoint, ['-prefix', prefix, '-clean']), ['setup', ...CLEANUP]);
      const after = [...(await stack.shardContents()).values()].flat().filter((k) => k.startsWith(prefix));
      t.same(after, [], 'the clean-up emptied every shard');
    });
  }
});
