import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ring, placement } from '../lib/ring';

// The installed entry point (built by `make build`): exit codes and output
// that scripts depend on.

const bin = join(__dirname, '..', 'bin', 'tempo-s3-shard');
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH!, ...env } });

const dir = mkdtempSync(join(tmpdir(), 'tss-cli-'));
const config = join(dir, 'config.json');
writeFileSync(config, JSON.stringify({
  endpoint: 'http://127.0.0.1:9', access_key_id: 'AKIDEXAMPLE', secret_access_key: 'super-secret-value',
  buckets: ['shard1', 'shard2', 'shard3'],
}));

t.test('--version and --help', async (t) => {
  const v = run(['--version']);
  t.equal(v.status, 0);
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  const h = run(['--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /locate/);
});

t.test('locate prints key, tab, bucket', async (t) => {
  const keys = ['single-tenant/abc/bloom-0', 'tempo_cluster_seed.json', 'a//b'];
  const r = run(['locate', '-config', config, ...keys]);
  t.equal(r.status, 0, r.stderr);
  const ring = new Ring(['shard1', 'shard2', 'shard3']);
  t.equal(r.stdout, keys.map((k) => `${k}\t${ring.locate(k)}\n`).join(''));
});

t.test('locate follows the configured placement', async (t) => {
  const balanced = join(dir, 'balanced.json');
  writeFileSync(balanced, JSON.stringify({
    endpoint: 'http://127.0.0.1:9', access_key_id: 'AKIDEXAMPLE', secret_access_key: 'super-secret-value',
    placement: 'balanced', shards: [{ bucket: 'shard1', weight: 1 }, { bucket: 'shard2', weight: 2 }, { bucket: 'shard3', weight: 1 }],
  }));
  const keys = Array.from({ length: 20 }, (_, i) => `tenant/block-${i}/meta.json`);
  const r = run(['locate', '--config', balanced, ...keys]);
  t.equal(r.status, 0, r.stderr);
  const members = [{ bucket: 'shard1', weight: 1 }, { bucket: 'shard2', weight: 2 }, { bucket: 'shard3', weight: 1 }];
  t.equal(r.stdout, keys.map((k) => `${k}\t${placement('balanced', members).locate(k)}\n`).join(''));
  t.not(r.stdout, keys.map((k) => `${k}\t${new Ring(['shard1', 'shard2', 'shard3']).locate(k)}\n`).join(''), 'not the original ring');
});

t.test('a missing config file: exit 2, one line naming the file', async (t) => {
  const r = run(['--config', join(dir, 'nope.json')]);
  t.equal(r.status, 2);
  t.equal(r.stderr.trim().split('\n').length, 1);
  t.match(r.stderr, 'nope.json');
});

t.test('an invalid field: exit 2, the field named, the secret never', async (t) => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({
    endpoint: 'http://127.0.0.1:9', access_key_id: 'AKIDEXAMPLE', secret_access_key: 'super-secret-value', buckets: ['ok-bucket', 'Bad_Bucket'],
  }));
  const r = run(['--config', bad]);
  t.equal(r.status, 2);
  t.match(r.stderr, 'bad.json');
  t.match(r.stderr, 'buckets[1]');
  t.notMatch(r.stderr, 'super-secret-value');
});

t.test('no config at all never falls back to built-in credentials', async (t) => {
  const r = run([]);
  t.equal(r.status, 2);
  t.notMatch(r.stderr, /minioadmin/);
});

t.test('an unreachable backend at start-up: exit 1, no secret in the log', async (t) => {
  const r = run(['--config', config]);
  t.equal(r.status, 1);
  t.notMatch(r.stderr, 'super-secret-value');
});
