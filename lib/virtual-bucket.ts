import type { VirtualBucketConfig } from './config';
import { Backend, Pools } from './backend';
import { Ring } from './ring';

// A bucket the clients see: a ring over its shard buckets and a backend for
// each of them.
export class VirtualBucket {
  readonly name: string;
  readonly backends: Backend[];
  private readonly ring: Ring;
  private readonly byBucket: Map<string, Backend>;

  constructor(readonly config: VirtualBucketConfig, pools: Pools) {
    this.name = config.name;
    this.backends = config.shards.map((s) => new Backend(s, pools));
    this.byBucket = new Map(this.backends.map((b) => [b.bucket, b]));
    this.ring = new Ring(this.backends.map((b) => b.bucket));
  }

  owner(key: string): Backend {
    return this.byBucket.get(this.ring.locate(key, this.config.hashPrefix))!;
  }
}
