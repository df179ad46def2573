import t from 'tap';
import type { Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, statSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { awsCli } from '../helpers/python';
import { run } from '../helpers/run';
import { DIRS, MiB, NAMES, buildTree, hashTree, sorted } from '../helpers/tree';
import { Ring } from '../../lib/ring';

// `aws s3 sync` up and down through the proxy: a tree of a few hundred files
// with awkward names arrives byte-exact, lands where the ring says, and a
// second sync transfers nothing, which only holds if the merged listing shows
// every object with its size.

const lines = (out: string, verb: string) => out.split('\n').filter((l) => l.startsWith(`${verb}: `));

t.test('aws s3 sync through the proxy', async (t) => {
  const stack = await startStack(t);
  const work = mkdtempSync(join(tmpdir(), 'tss-aws-sync-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  const down = join(work, 'down');
  mkdirSync(down);
  writeFileSync(join(work, 'config'), '[default]\ns3 =\n  addressing_style = path\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env, AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: join(work, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true', PYTHONIOENCODING: 'utf-8',
  };
  delete env.AWS_PROFILE;
  const aws = async (t: Test, ...args: string[]) => {
    const r = await run(awsCli(), ['s3', ...args, '--endpoint-url', stack.endpoint], { env, timeoutMs: 300_000 });
    t.equal(r.status, 0, `aws s3 ${args[0]} exits 0`, { stderr: r.stderr.slice(-1500) });
    return r.stdout;
  };

  const files = buildTree(src, { path: 'a/b/big multipart.bin', size: 9 * MiB + 12_345 });
  const count = files.size;
  const keys = [...files.keys()].map((rel) => `tree/${rel}`);
  const ring = new Ring(stack.shards);
  const GROWN = `ünïcödé/日本/${NAMES(6)}`;

  await t.test('sync up', async (t) => {
    const out = await aws(t, 'sync', src, 's3://proxy-bucket/tree/', '--no-progress');
    t.equal(lines(out, 'upload').length, count, `uploaded ${count} files`);
    const contents = await stack.shardContents();
    for (const shard of stack.shards) {
      t.same(contents.get(shard)!.slice().sort(), keys.filter((k) => ring.locate(k) === shard).sort(), `${shard} holds exactly the keys the ring gives it`);
    }
    t.ok(stack.shards.every((s) => contents.get(s)!.length > 0), 'every shard got some');
    const bigKey = 'tree/a/b/big multipart.bin';
    const big = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(bigKey), Key: bigKey }));
    t.match(big.ETag, /-2"$/, 'the 9 MiB file went up in two parts');
    t.equal(big.ContentLength, 9 * MiB + 12_345);
  });

  await t.test('sync down into an empty directory', async (t) => {
    const out = await aws(t, 'sync', 's3://proxy-bucket/tree/', down, '--no-progress');
    t.equal(lines(out, 'download').length, count, `downloaded ${count} files`);
    t.same(sorted(hashTree(down)), sorted(files), 'the same paths with the same sha256');
  });

  await t.test('a second sync transfers nothing', async (t) => {
    const up = await aws(t, 'sync', src, 's3://proxy-bucket/tree/', '--no-progress', '--page-size', '37');
    t.same(lines(up, 'upload'), [], 'nothing uploaded (listing paged 37 keys at a time)');
    const again = await aws(t, 'sync', 's3://proxy-bucket/tree/', down, '--no-progress');
    t.same(lines(again, 'download'), [], 'nothing downloaded');
    appendFileSync(join(src, GROWN), 'grown');
    const one = await aws(t, 'sync', src, 's3://proxy-bucket/tree/', '--no-progress', '--page-size', '37');
    t.same(lines(one, 'upload').map((l) => l.replace(/^upload: .* to /, '')), [`s3://proxy-bucket/tree/${GROWN}`],
      'a changed file is the one upload');
  });

  await t.test('ls --recursive', async (t) => {
    const out = await aws(t, 'ls', '--recursive', 's3://proxy-bucket/tree/', '--page-size', '50');
    const listed = out.split('\n').filter(Boolean).map((l) => /^\S+ \S+ +(\d+) (.*)$/.exec(l)!);
    t.equal(listed.length, count, `${count} objects listed`);
    t.same(listed.map((m) => m[2]).sort(), keys.slice().sort(), 'every key once');
    const sizes = new Map(listed.map((m) => [m[2], Number(m[1])]));
    t.equal(sizes.get('tree/a/b/big multipart.bin'), 9 * MiB + 12_345, 'with its size');
    t.equal(sizes.get(`tree/${GROWN}`), statSync(join(src, GROWN)).size, 'the grown file has its new size');
  });

  await t.test('rm --recursive', async (t) => {
    const out = await aws(t, 'rm', '--recursive', 's3://proxy-bucket/tree/');
    t.equal(lines(out, 'delete').length, count, `deleted ${count}`);
    const contents = await stack.shardContents();
    t.same([...contents.values()].flat(), [], 'every shard is empty');
    t.equal((await aws(t, 'ls', '--recursive', 's3://proxy-bucket/')).trim(), '', 'nothing left to list');
  });
});
