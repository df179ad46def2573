import t from 'tap';
import type { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { run } from '../helpers/run';
import { DIRS, MiB, NAMES, buildTree, hashTree, sorted } from '../helpers/tree';
import { Ring } from '../../lib/ring';

// rclone (Debian's package, `make deps` installs it) copies a tree of a few
// hundred files through the proxy with 5 MiB multipart chunks, checks it,
// copies it back byte-exact, copies server-side (CopyObject with the COPY and
// REPLACE directives, UploadPartCopy past a lowered copy cutoff) and deletes it.

const BIG = 'a/b/big multipart.bin';
const BIG_SIZE = 12 * MiB + 4321;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function rcloneBin(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v rclone'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('rclone not found: run "make deps" (it installs the Debian package)');
  }
}

t.test('rclone through the proxy', async (t) => {
  const stack = await startStack(t);
  const work = mkdtempSync(join(tmpdir(), 'tss-rclone-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  const down = join(work, 'down');
  writeFileSync(join(work, 'rclone.conf'), '');
  const bin = rcloneBin();
  const env: NodeJS.ProcessEnv = {
    ...process.env, RCLONE_CONFIG: join(work, 'rclone.conf'),
    RCLONE_CONFIG_PROXY_TYPE: 's3', RCLONE_CONFIG_PROXY_PROVIDER: 'Other', RCLONE_CONFIG_PROXY_ENDPOINT: stack.endpoint,
    RCLONE_CONFIG_PROXY_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, RCLONE_CONFIG_PROXY_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    RCLONE_CONFIG_PROXY_FORCE_PATH_STYLE: 'true', RCLONE_CONFIG_PROXY_REGION: 'us-east-1', TZ: 'UTC',
  };
  // rclone's AWS SDK refuses to start when AWS_CA_BUNDLE is set (it cannot
  // put the bundle into rclone's own transport); the proxy speaks plain HTTP.
  delete env.AWS_CA_BUNDLE;
  const rclone = async (t: Test, ...args: string[]) => {
    const r = await run(bin, [...args, '--stats-log-level', 'DEBUG'], { env, timeoutMs: 300_000 });
    t.equal(r.status, 0, `rclone ${args[0]} exits 0`, { stderr: r.stderr.slice(-3000) });
    return r;
  };
  const logged = (stderr: string, what: string) => stderr.split('\n').filter((l) => l.includes(`: ${what}`));

  const files = buildTree(src, { path: BIG, size: BIG_SIZE });
  const count = files.size;
  const keys = [...files.keys()].map((rel) => `tree/${rel}`);
  const ring = new Ring(stack.shards);
  const chunked = ['--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M'];

  await t.test('copy up', async (t) => {
    const r = await rclone(t, 'copy', src, 'proxy:proxy-bucket/tree', ...chunked, '-v');
    t.equal(logged(r.stderr, 'Copied (new)').length, count, `copied ${count} files`);
    const contents = await stack.shardContents();
    for (const shard of stack.shards) {
      t.same(contents.get(shard)!.slice().sort(), keys.filter((k) => ring.locate(k) === shard).sort(), `${shard} holds exactly the keys the ring gives it`);
    }
    const head = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(`tree/${BIG}`), Key: `tree/${BIG}` }));
    t.match(head.ETag, /-3"$/, 'the 12 MiB file went up in three 5 MiB parts');
    t.equal(head.ContentLength, BIG_SIZE);
    t.ok(head.Metadata?.md5chksum, 'with the md5 rclone keeps for multipart objects');
  });

  await t.test('check', async (t) => {
    const r = await rclone(t, 'check', src, 'proxy:proxy-bucket/tree');
    t.match(r.stderr, / 0 differences found/, 'no differences');
    t.match(r.stderr, new RegExp(` ${count} matching files`), 'every file matched by size and md5');
    const victim = join(src, DIRS[1], NAMES(1));
    const original = readFileSync(victim);
    writeFileSync(victim, 'changed');
    const changed = await run(bin, ['check', src, 'proxy:proxy-bucket/tree'], { env });
    writeFileSync(victim, original);
    t.not(changed.status, 0, 'a changed file is a difference');
    t.match(changed.stderr, / 1 differences found/, 'exactly that one');
  });

  await t.test('copy down', async (t) => {
    const r = await rclone(t, 'copy', 'proxy:proxy-bucket/tree', down, '-v', '--s3-list-chunk', '37');
    t.equal(logged(r.stderr, 'Copied (new)').length, count, `copied ${count} files`);
    t.same(sorted(hashTree(down)), sorted(files), 'the same paths with the same sha256');
  });

  await t.test('lsf -R', async (t) => {
    for (const version of ['1', '2']) {
      const r = await rclone(t, 'lsf', '-R', '--files-only', '--s3-list-version', version, '--s3-list-chunk', '37', 'proxy:proxy-bucket/tree');
      const listed = r.stdout.split('\n').filter(Boolean);
      t.equal(listed.length, count, `ListObjects V${version}: ${count} files`);
      t.same(listed.sort(), [...files.keys()].sort(), `ListObjects V${version}: every path once`);
    }
    const dirs = await rclone(t, 'lsf', '--dirs-only', 'proxy:proxy-bucket/tree');
    t.same(dirs.stdout.split('\n').filter(Boolean).sort(), ['a/', 'mixed/', 'plus+dir/', 'with space/', 'ünïcödé/'], 'top-level prefixes once each');
  });

  await t.test('server-side copies', async (t) => {
    const rel = `${DIRS[4]}/${NAMES(4)}`;
    t.ok(files.has(rel), `${rel} is in the tree`);
    const small = `tree/${rel}`;
    const dst = 'copied/meta/small';
    t.equal(ring.locate(dst), ring.locate(small), 'this copy stays within one shard');
    const r = await rclone(t, 'copyto', `proxy:proxy-bucket/${small}`, `proxy:proxy-bucket/${dst}`, '-v');
    t.equal(logged(r.stderr, 'Copied (server-side copy)').length, 1, 'rclone copied server-side');
    const source = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(small), Key: small }));
    const head = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(dst), Key: dst }));
    t.ok(source.Metadata?.mtime, 'rclone keeps the mtime in metadata');
    t.equal(head.Metadata?.mtime, source.Metadata?.mtime, 'the COPY directive carried it to the owner shard');
    const got = await stack.direct.send(new GetObjectCommand({ Bucket: ring.locate(dst), Key: dst }));
    t.equal(sha(await got.Body!.transformToByteArray()), files.get(rel), 'the copy has the source bytes');

    const bigDst = 'copied/big/copy.bin';
    t.not(ring.locate(bigDst), ring.locate(`tree/${BIG}`), 'this one crosses shards');
    const big = await rclone(t, 'copyto', `proxy:proxy-bucket/tree/${BIG}`, `proxy:proxy-bucket/${bigDst}`, '-v', '--s3-copy-cutoff', '5M');
    t.equal(logged(big.stderr, 'Copied (server-side copy)').length, 1, 'a multipart server-side copy');
    const bigHead = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(bigDst), Key: bigDst }));
    t.match(bigHead.ETag, /-3"$/, 'assembled from three UploadPartCopy parts');
    const bigGot = await stack.direct.send(new GetObjectCommand({ Bucket: ring.locate(bigDst), Key: bigDst }));
    t.equal(sha(await bigGot.Body!.transformToByteArray()), files.get(BIG), 'byte-exact');

    // touch on an existing object rewrites its mtime metadata: a CopyObject
    // onto itself with the REPLACE directive.
    await rclone(t, 'touch', '-t', '2001-02-03T04:05:06', `proxy:proxy-bucket/${small}`);
    const touched = await stack.direct.send(new HeadObjectCommand({ Bucket: ring.locate(small), Key: small }));
    t.equal(touched.Metadata?.mtime, String(Date.UTC(2001, 1, 3, 4, 5, 6) / 1000), 'REPLACE stored the new mtime');
    const lsl = await rclone(t, 'lsl', `proxy:proxy-bucket/${small}`);
    t.match(lsl.stdout, /2001-02-03 04:05:06/, 'and rclone reads it back');
    const bytes = await stack.direct.send(new GetObjectCommand({ Bucket: ring.locate(small), Key: small }));
    t.equal(sha(await bytes.Body!.transformToByteArray()), files.get(rel), 'the bytes are unchanged');
  });

  await t.test('delete', async (t) => {
    const r = await rclone(t, 'delete', 'proxy:proxy-bucket', '-v');
    t.equal(logged(r.stderr, 'Deleted').length, count + 2, 'the tree and both copies');
    const contents = await stack.shardContents();
    t.same([...contents.values()].flat(), [], 'every shard is empty');
    const left = await rclone(t, 'lsf', '-R', 'proxy:proxy-bucket');
    t.equal(left.stdout, '', 'nothing left to list');
  });
});
