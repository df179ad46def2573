import t from 'tap';
import { Balanced, Generations, Ring, hashKey, placement } from '../lib/ring';
import type { PlacementKind } from '../lib/ring';
import { blockKeys } from './bench/placement';

// Balanced placement and ring generations. The key sets are Tempo block keys
// (`<tenant>/<uuid>`) from a seeded generator, so every figure is the same
// on every run.

const names = (n: number) => Array.from({ length: n }, (_, i) => `shard${i + 1}`);
const members = (buckets: string[]) => buckets.map((bucket) => ({ bucket, weight: 1 }));
const keys = blockKeys(100_000, 1);

function spread(kind: PlacementKind, n: number) {
  const p = placement(kind, members(names(n)));
  const c = new Map<string, number>();
  for (const k of keys) {
    const o = p.locate(k);
    c.set(o, (c.get(o) ?? 0) + 1);
  }
  const mean = keys.length / n;
  const all = names(n).map((b) => c.get(b) ?? 0);
  return { maxAbove: Math.max(...all) / mean - 1, minOf: Math.min(...all) / mean, shards: c.size };
}

t.test('balanced: 16 shards, 100,000 block keys, the fullest at most 3% above the mean', async (t) => {
  const ring = spread('ring', 16);
  const balanced = spread('balanced', 16);
  t.comment(`ring: fullest +${(ring.maxAbove * 100).toFixed(1)}%, emptiest ${(ring.minOf * 100).toFixed(1)}% of the mean`);
  t.comment(`balanced: fullest +${(balanced.maxAbove * 100).toFixed(1)}%, emptiest ${(balanced.minOf * 100).toFixed(1)}% of the mean`);
  t.equal(balanced.shards, 16, 'every shard gets keys');
  t.ok(balanced.maxAbove <= 0.03, 'balanced: fullest shard at most 3% above the mean');
  t.ok(balanced.minOf >= 0.97, 'balanced: emptiest shard at least 97% of the mean');
  t.ok(ring.maxAbove > 0.1, 'the original ring is well off (why balanced exists)');
});

t.test('balanced: what imbalance is left is the keys\' own randomness', async (t) => {
  // Any placement that decides each key alone spreads random keys
  // multinomially: the count per shard varies by about 1.2% of the mean with
  // 100,000 keys on 16 shards, so some key sets put the fullest a little over
  // 3%. Chi-square (15 degrees of freedom) says whether a placement adds
  // imbalance of its own; 37.7 is its 0.1% critical value.
  const chiSquare = (kind: PlacementKind, ks: string[]) => {
    const p = placement(kind, members(names(16)));
    const c = new Map<string, number>();
    for (const k of ks) {
      const o = p.locate(k);
      c.set(o, (c.get(o) ?? 0) + 1);
    }
    const mean = ks.length / 16;
    return names(16).reduce((sum, b) => sum + ((c.get(b) ?? 0) - mean) ** 2 / mean, 0);
  };
  for (const seed of [2, 3, 4]) {
    const ks = blockKeys(100_000, seed);
    const balanced = chiSquare('balanced', ks);
    const ring = chiSquare('ring', ks);
    t.comment(`seed ${seed}: chi-square balanced ${balanced.toFixed(1)}, ring ${ring.toFixed(0)}`);
    t.ok(balanced < 37.7, `seed ${seed}: balanced adds no imbalance of its own`);
    t.ok(ring > 37.7, `seed ${seed}: the ring does`);
  }
});

t.test('balanced: adding a 17th shard moves keys only to it, at most 2% more than 1/17', async (t) => {
  const before = new Balanced(members(names(16)));
  const after = new Balanced(members(names(17)));
  let moved = 0;
  let elsewhere = 0;
  for (const k of keys) {
    const a = before.locate(k);
    const b = after.locate(k);
    if (a === b) continue;
    moved++;
    if (b !== 'shard17') elsewhere++;
  }
  const ideal = keys.length / 17;
  t.comment(`moved ${moved} keys, ideal ${ideal.toFixed(0)} (${((moved / ideal - 1) * 100).toFixed(2)}% more)`);
  t.equal(elsewhere, 0, 'no key moves between old shards');
  t.ok(moved <= ideal * 1.02, 'at most 2% more than the ideal');
  t.ok(moved >= ideal * 0.98, 'and not far below it either: the new shard takes its share');

  const ringBefore = new Ring(names(16));
  const ringAfter = new Ring(names(17));
  const ringMoved = keys.filter((k) => ringBefore.locate(k) !== ringAfter.locate(k)).length;
  t.comment(`the original ring moves ${ringMoved}: its new shard gets ${((1 - ringMoved / ideal) * 100).toFixed(1)}% less than a fair share`);
});

t.test('balanced: weights set each shard\'s share', async (t) => {
  const ks = keys.slice(0, 50_000);
  const p = new Balanced([{ bucket: 'big-one', weight: 3 }, ...members(names(6))]);
  const c = new Map<string, number>();
  for (const k of ks) {
    const o = p.locate(k);
    c.set(o, (c.get(o) ?? 0) + 1);
  }
  const share = (c.get('big-one') ?? 0) / ks.length;
  t.comment(`weight 3 of 9: share ${(share * 100).toFixed(2)}% (expected ${(300 / 9).toFixed(2)}%)`);
  t.ok(Math.abs(share - 3 / 9) < 0.01, 'a weight-3 shard among six of weight 1 holds a third');
  for (const b of names(6)) t.ok(Math.abs((c.get(b) ?? 0) / ks.length - 1 / 9) < 0.01, `${b} holds a ninth`);

  // Raising one weight moves keys only onto that shard.
  const heavier = new Balanced([{ bucket: 'big-one', weight: 4 }, ...members(names(6))]);
  t.ok(ks.every((k) => heavier.locate(k) === p.locate(k) || heavier.locate(k) === 'big-one'), 'a heavier shard only gains');
  t.throws(() => new Balanced([{ bucket: 'x', weight: 0 }]), /weight/);
  t.throws(() => new Balanced([]));
});

t.test('balanced: blocks stay whole, order does not matter, replicas agree', async (t) => {
  const p = new Balanced(members(names(5)));
  const shuffled = new Balanced(members(names(5).reverse()));
  const again = new Balanced(members(names(5)));
  for (const block of keys.slice(0, 2000)) {
    const owner = p.locate(`${block}/data.parquet`);
    for (const f of ['meta.json', 'bloom-0', 'index']) t.equal(p.locate(`${block}/${f}`), owner);
    t.equal(shuffled.locate(`${block}/data.parquet`), owner);
    t.equal(again.locate(`${block}/data.parquet`), owner);
  }
  t.equal(p.locate('tempo/t/b/meta.json', 'tempo/'), p.locate(hashKey('tempo/t/b/x', 'tempo/')), 'the hash prefix is skipped');
});

t.test('generations: the current owner first, then each earlier ring\'s, each shard once', async (t) => {
  const g = new Generations([
    { placement: 'ring', members: members(names(4)) },
    { placement: 'ring', members: members(names(3)) },
    { placement: 'ring', members: members(names(2)) },
  ]);
  const r4 = new Ring(names(4));
  const r3 = new Ring(names(3));
  const r2 = new Ring(names(2));
  let moved = 0;
  for (const k of keys.slice(0, 20_000)) {
    const expected = [...new Set([r4.locate(k), r3.locate(k), r2.locate(k)])];
    t.same(g.owners(k), expected);
    t.equal(g.owner(k), r4.locate(k));
    if (r4.locate(k) !== r3.locate(k)) moved++;
  }
  t.ok(moved > 0, `${moved} keys changed owner with the fourth shard`);
  t.same(new Generations([{ placement: 'ring', members: members(names(3)) }]).owners('a/b/c'), [r3.locate('a/b/c')],
    'one ring: one owner');

  // Moving from the original ring to balanced placement is a ring change too.
  const switched = new Generations([
    { placement: 'balanced', members: members(names(3)) },
    { placement: 'ring', members: members(names(3)) },
  ], 'tempo/');
  const b3 = new Balanced(members(names(3)));
  for (const k of keys.slice(0, 1000)) {
    const key = `tempo/${k}/meta.json`;
    t.same(switched.owners(key), [...new Set([b3.locate(key, 'tempo/'), r3.locate(key, 'tempo/')])]);
  }
  t.throws(() => new Generations([]));
});
