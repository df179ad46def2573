import { placement } from '../../lib/ring';
import type { PlacementKind } from '../../lib/ring';

// How evenly each placement spreads Tempo block keys over 16 shards, and how
// many keys move when a 17th is added. Deterministic: the keys come from a
// seeded generator, so the figures are the same on every run.

// mulberry32: a small seeded PRNG, good enough to make distinct uuids.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `<tenant>/<uuid v4>` block keys, as Tempo names its blocks. */
export function blockKeys(n: number, seed: number, tenants = 8): string[] {
  const rand = prng(seed);
  const hex = (len: number) => Array.from({ length: len }, () => Math.floor(rand() * 16).toString(16)).join('');
  return Array.from({ length: n }, () => {
    const variant = (8 + Math.floor(rand() * 4)).toString(16);
    const uuid = `${hex(8)}-${hex(4)}-4${hex(3)}-${variant}${hex(3)}-${hex(12)}`;
    return `tenant-${Math.floor(rand() * tenants)}/${uuid}`;
  });
}

export interface PlacementFigures {
  kind: PlacementKind;
  shards: number;
  keys: number;
  /** The fullest shard, in % above the mean. */
  maxAboveMean: number;
  /** The emptiest shard, in % of the mean. */
  minOfMean: number;
  /** Keys that changed owner when one shard was added, in % of all keys. */
  movedOnAdd: number;
  /** The least any placement must move: 1/(N+1), in %. */
  idealMove: number;
}

export function placementFigures(kind: PlacementKind, shards: number, keys: readonly string[]): PlacementFigures {
  const buckets = Array.from({ length: shards + 1 }, (_, i) => `shard${i + 1}`);
  const before = placement(kind, buckets.slice(0, shards).map((bucket) => ({ bucket, weight: 1 })));
  const after = placement(kind, buckets.map((bucket) => ({ bucket, weight: 1 })));
  const counts = new Map<string, number>();
  let moved = 0;
  for (const key of keys) {
    const owner = before.locate(key);
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
    if (after.locate(key) !== owner) moved++;
  }
  const mean = keys.length / shards;
  const all = buckets.slice(0, shards).map((b) => counts.get(b) ?? 0);
  return {
    kind, shards, keys: keys.length,
    maxAboveMean: (Math.max(...all) / mean - 1) * 100,
    minOfMean: (Math.min(...all) / mean) * 100,
    movedOnAdd: (moved / keys.length) * 100,
    idealMove: 100 / (shards + 1),
  };
}

/** `make bench`: both placements' figures for 16 shards and 100,000 block
 * keys, for a few key sets. */
export function placementBench(out: (line: string) => void = console.log): void {
  out('placement: 16 shards, 100,000 block keys, then a 17th shard added');
  out('placement  seed  fullest shard   emptiest shard  moved on add (ideal)');
  for (const seed of [1, 2, 3, 4, 5]) {
    const keys = blockKeys(100_000, seed);
    for (const kind of ['ring', 'balanced'] as const) {
      const f = placementFigures(kind, 16, keys);
      out(`${kind.padEnd(9)}  ${String(seed).padStart(4)}  ${`+${f.maxAboveMean.toFixed(2)}% of mean`.padEnd(14)}  ` +
        `${`${f.minOfMean.toFixed(2)}% of mean`.padEnd(14)}  ${f.movedOnAdd.toFixed(2)}% (${f.idealMove.toFixed(2)}%)`);
    }
  }
}

if (require.main === module) placementBench();
