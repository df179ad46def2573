import { hash } from 'node:crypto';

// Placement: which shard bucket owns a key. The original ring is the default
// forever; `balanced` is an option; a virtual bucket's earlier ring
// generations say where keys were before the latest change.

export type PlacementKind = 'ring' | 'balanced';
export interface Member { bucket: string; weight: number }
export interface Placement { locate(key: string, hashPrefix?: string): string }

// The original Go tool's placement, reproduced bit for bit so that objects
// written by an existing deployment are found where it put them.
const VIRTUAL_NODES = 100;

// The one-shot hash: a Hash object for each request showed in the profile.
function digest(s: string): Buffer {
  return hash('sha256', s, 'buffer');
}

function point(s: string): number {
  return digest(s).readUInt32BE(0);
}

// Tempo writes `<tenant>/<block>/<file>`: hashing only the first two segments
// keeps every file of a block on one shard. `hashPrefix` (e.g. Tempo's own
// `prefix: tempo/`) is skipped first so blocks, not whole tenants, spread.
export function hashKey(key: string, hashPrefix = ''): string {
  const k = hashPrefix && key.startsWith(hashPrefix) ? key.slice(hashPrefix.length) : key;
  const first = k.indexOf('/');
  if (first < 0) return k;
  const second = k.indexOf('/', first + 1);
  return second < 0 ? k : k.slice(0, second);
}

export class Ring implements Placement {
  readonly buckets: readonly string[];
  private readonly points: Uint32Array;
  private readonly owners: string[];

  constructor(buckets: readonly string[]) {
    if (buckets.length === 0) throw new Error('a ring needs at least one bucket');
    this.buckets = buckets;
    // A point hashed by two buckets belongs to the one added last, as the
    // original's map assignment left it.
    const owner = new Map<number, string>();
    for (const bucket of buckets) {
      for (let i = 0; i < VIRTUAL_NODES; i++) owner.set(point(bucket + String(i)), bucket);
    }
    this.points = Uint32Array.from(owner.keys()).sort();
    this.owners = Array.from(this.points, (p) => owner.get(p)!);
  }

  locate(key: string, hashPrefix = ''): string {
    const h = point(hashKey(key, hashPrefix));
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === this.points.length ? 0 : lo];
  }
}

// murmur3's finaliser: a bijection of 32 bits in which every input bit flips
// every output bit with probability about 1/2.
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// Rendezvous (highest random weight) hashing: every bucket draws a score for
// the key and the highest wins. A 100-point ring leaves arcs of unequal
// length (the fullest of 16 shards holds about 20% above the mean); here each
// bucket's chance is exactly weight / total, so the only imbalance left is
// the keys' own randomness, and a new bucket takes only the keys it wins,
// weight / total of them, from every other bucket alike.
export class Balanced implements Placement {
  private readonly members: { bucket: string; weight: number; s0: number; s1: number }[];

  constructor(members: readonly Member[]) {
    if (members.length === 0) throw new Error('a placement needs at least one bucket');
    this.members = members.map((m) => {
      if (!(m.weight > 0) || !Number.isFinite(m.weight)) throw new Error(`bucket ${m.bucket}: the weight must be a positive number`);
      const d = digest(m.bucket);
      return { ...m, s0: d.readUInt32BE(0), s1: d.readUInt32BE(4) };
    });
  }

  locate(key: string, hashPrefix = ''): string {
    // One digest per key; each bucket's draw mixes it with the bucket's seed.
    const d = digest(hashKey(key, hashPrefix));
    const k0 = d.readUInt32BE(0);
    const k1 = d.readUInt32BE(4);
    let best = this.members[0].bucket;
    let bestScore = -1;
    for (const m of this.members) {
      const hi = fmix32(k0 ^ m.s0);
      const lo = fmix32(k1 ^ m.s1 ^ hi);
      const u = (hi * 2 ** 20 + (lo >>> 12) + 0.5) / 2 ** 52; // uniform in (0, 1)
      // -ln(u) / weight is exponential with rate `weight`: the smallest of
      // them, the largest score, falls to each bucket with chance weight / total.
      const score = m.weight / -Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = m.bucket;
      }
    }
    return best;
  }
}

export function placement(kind: PlacementKind, members: readonly Member[]): Placement {
  return kind === 'balanced' ? new Balanced(members) : new Ring(members.map((m) => m.bucket));
}

export interface Generation { placement: PlacementKind; members: readonly Member[] }

// The current ring and the earlier ones, newest first. Stateless: every proxy
// replica with the same config computes the same owners.
export class Generations {
  private readonly placements: Placement[];

  constructor(generations: readonly Generation[], private readonly hashPrefix = '') {
    if (generations.length === 0) throw new Error('at least the current ring is needed');
    this.placements = generations.map((g) => placement(g.placement, g.members));
  }

  /** Where the key is written: the current ring's owner. */
  owner(key: string): string {
    return this.placements[0].locate(key, this.hashPrefix);
  }

  /** Every bucket the key may sit in, the current owner first, then each
   * earlier generation's owner, each bucket once. */
  owners(key: string): string[] {
    const out: string[] = [];
    for (const p of this.placements) {
      const b = p.locate(key, this.hashPrefix);
      if (!out.includes(b)) out.push(b);
    }
    return out;
  }
}
