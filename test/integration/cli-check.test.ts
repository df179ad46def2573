import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { run } from '../helpers/run';

// `tempo-s3-shard check` against a real MinIO: a table of shards and their
// state, and an exit code scripts can trust.

const bin = join(__dirname, '..', '..', 'bin', 'tempo-s3-shard');

t.test('check reaches, reports and creates shard buckets', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const dir = mkdtempSync(join(tmpdir(), 'tss-check-'));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    endpoint: minio.endpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD, buckets: ['chk-1', 'chk-2', 'chk-3'],
  }));
  const check = (...args: string[]) => run(process.execPath, [bin, 'check', '--config', config, ...args]);

  const before = await check('--no-create');
  t.equal(before.status, 1, 'missing buckets fail the check');
  t.equal(before.stdout.split('\n').filter((l) => /\bmissing\b/.test(l)).length, 3, before.stdout);

  const create = await check();
  t.equal(create.status, 0, create.stderr);
  t.equal(create.stdout.split('\n').filter((l) => /\bcreated\b/.test(l)).length, 3, create.stdout);

  const after = await check('--no-create');
  t.equal(after.status, 0);
  t.match(after.stdout, /^VIRTUAL BUCKET\s+SHARD BUCKET\s+ENDPOINT\s+STATE\s+DETAIL$/m);
  t.equal(after.stdout.split('\n').filter((l) => /\bproxy-bucket\s+chk-\d\s+\S+\s+ok\b/.test(l)).length, 3, after.stdout);
  t.notMatch(after.stdout + after.stderr, MINIO_PASSWORD, 'no secret printed');

  writeFileSync(config, JSON.stringify({
    endpoint: 'http://127.0.0.1:9', access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD, buckets: ['chk-1'],
  }));
  const down = await check();
  t.equal(down.status, 1);
  t.match(down.stdout, /chk-1\s+http:\/\/127\.0\.0\.1:9\s+unreachable/);
});
