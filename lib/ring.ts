import { createHash } from 'node:crypto';

// The original Go tool's placement, reproduced bit for bit so that objects
// written by an existing deployment are found where it put them.
const VIRTUAL_NODES = 100;

function point(s: string): number {
  return createHash('sha256').update(s, 'utf8').digest().readUInt32BE(0);
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

export class Ring {
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
