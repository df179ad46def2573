import type { VirtualBucketConfig } from './config';
import { Backend, Pools } from './backend';
import { Generations } from './ring';

// A bucket the clients see: its ring generations over its shard buckets and
// a backend for each bucket of any generation, so a bucket that only earlier
// rings name is still reached, listed and checked.
export class VirtualBucket {
  readonly name: string;
  /** Every shard of every generation, the current ring's first. */
  readonly backends: Backend[];
  private readonly generations: Generations;
  private readonly byBucket = new Map<string, Backend>();

  constructor(readonly config: VirtualBucketConfig, pools: Pools) {
    this.name = config.name;
    const rings = [config, ...config.previousRings];
    for (const shard of rings.flatMap((r) => r.shards)) {
      if (!this.byBucket.has(shard.bucket)) this.byBucket.set(shard.bucket, new Backend(shard, pools));
    }
    this.backends = [...this.byBucket.values()];
    this.generations = new Generations(
      rings.map((r) => ({ placement: r.placement, members: r.shards })), config.hashPrefix);
  }

  /** Where the key is written. */
  owner(key: string): Backend {
    return this.byBucket.get(this.generations.owner(key))!;
  }

  /** Where the key may be: the current owner first, then where each earlier
   * ring put it, each shard once. */
  owners(key: string): Backend[] {
    return this.generations.owners(key).map((b) => this.byBucket.get(b)!);
  }
}
