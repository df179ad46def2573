import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ring, hashKey } from '../lib/ring';

interface VectorSet { buckets: string[]; cases: { key: string; bucket: string }[] }
const vectors: { sets: VectorSet[] } = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'seed-ring-vectors.json'), 'utf8'));

t.test('every placement vector of the original ring', async (t) => {
  let n = 0;
  for (const set of vectors.sets) {
    const ring = new Ring(set.buckets);
    for (const c of set.cases) {
      t.equal(ring.locate(c.key), c.bucket, `${set.buckets.length} buckets: ${JSON.stringify(c.key)}`);
      n++;
    }
  }
  t.ok(n >= 200, `checked ${n} vectors`);
});

t.test('hash key: the first two segments', async (t) => {
  t.equal(hashKey('simple-file'), 'simple-file');
  t.equal(hashKey('t/block/data.parquet'), 't/block');
  t.equal(hashKey('t/block'), 't/block');
  t.equal(hashKey('a/'), 'a/');
  t.equal(hashKey('a//b'), 'a/');
  t.equal(hashKey('/lead/x'), '/lead');
  t.equal(hashKey('tempo/t/block/meta.json', 'tempo/'), 't/block');
  t.equal(hashKey('other/t/block', 'tempo/'), 'other/t');
});

t.test('every file of a block lands on one shard; blocks spread', async (t) => {
  const ring = new Ring(['shard1', 'shard2', 'shard3']);
  const seen = new Set<string>();
  for (let b = 0; b < 300; b++) {
    const owners = new Set(['meta.json', 'data.parquet', 'bloom-0', 'index'].map(
      (f) => ring.locate(`tenant/block-${b}/${f}`)));
    t.equal(owners.size, 1);
    seen.add([...owners][0]);
  }
  t.same([...seen].sort(), ['shard1', 'shard2', 'shard3']);
});

t.test('with a hash prefix, blocks of one tenant still spread', async (t) => {
  const ring = new Ring(['shard1', 'shard2', 'shard3']);
  const owners = new Set<string>();
  for (let b = 0; b < 100; b++) owners.add(ring.locate(`tempo/tenant/block-${b}/meta.json`, 'tempo/'));
  t.equal(owners.size, 3);
});
