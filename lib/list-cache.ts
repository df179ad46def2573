// Listings in progress, kept between a client's pages. A page that ends with
// more to come leaves each shard's state here (the entries it fetched but did
// not use, its own continuation token, and the page it is reading ahead); the
// request for the next page takes it and goes on where every shard stopped.
// Without it, each page asks every shard to start over after the last key,
// which MinIO answers by walking the prefix again: twice the work of
// following its token.
//
// The cache only saves work. A page whose state is not here (expired,
// evicted, taken by an earlier try of the same request, or served by another
// worker) starts over from its marker and gives the same answer.

export class ListingCache<T> {
  // Insertion order is expiry order: every state lives the same time.
  private readonly items = new Map<string, { value: T; weight: number; expires: number }>();
  private weight = 0;

  /**
   * `maxWeight` bounds the entries held over all listings (each listing
   * weighs its buffered entries, at least 1); `ttlMs` is how long a client
   * may take to ask for its next page.
   */
  constructor(private readonly maxWeight: number, private readonly ttlMs: number, private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.items.size;
  }

  /** Keeps `value` for the next page that starts at `key`, oldest listings making room. */
  put(key: string, value: T, weight: number): void {
    weight = Math.max(1, weight);
    this.drop(key);
    this.expire();
    if (weight > this.maxWeight) return;
    for (const [oldest] of this.items) {
      if (this.weight + weight <= this.maxWeight) break;
      this.drop(oldest);
    }
    this.items.set(key, { value, weight, expires: this.now() + this.ttlMs });
    this.weight += weight;
  }

  /** The state left for `key`, removed: one listing page continues it once. */
  take(key: string): T | undefined {
    this.expire();
    const item = this.items.get(key);
    if (!item) return undefined;
    this.drop(key);
    return item.value;
  }

  private expire(): void {
    const now = this.now();
    for (const [key, item] of this.items) {
      if (item.expires > now) return;
      this.drop(key);
    }
  }

  private drop(key: string): void {
    const item = this.items.get(key);
    if (!item) return;
    this.items.delete(key);
    this.weight -= item.weight;
  }
}
