import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { S3Error } from './errors';
import { mergeListing, parseListRequest } from './list-merge';
import type { ListKind, ListingState, ShardPageFetcher } from './list-merge';
import { ListingCache } from './list-cache';
import type { S3Request } from './s3-request';
import type { VirtualBucket } from './virtual-bucket';
import { readCapped } from './forward';
import { channels } from './events';
import type { Handoff } from './handoff';

const KINDS: Partial<Record<S3Request['operation'], ListKind>> = {
  ListObjects: 'v1',
  ListObjectsV2: 'v2',
  ListObjectVersions: 'versions',
  ListMultipartUploads: 'uploads',
};

// Entries held for listings between pages, over all listings of a bucket:
// enough for several clients paging at once, about 8 MiB at most (an entry
// kept with its owner weighs some 800 bytes).
const CACHED_ENTRIES = 10_000;
const NEXT_PAGE_WITHIN_MS = 60_000;
const caches = new WeakMap<VirtualBucket, ListingCache<ListingState>>();

function cacheOf(vb: VirtualBucket): ListingCache<ListingState> {
  let cache = caches.get(vb);
  if (!cache) caches.set(vb, cache = new ListingCache(CACHED_ENTRIES, NEXT_PAGE_WITHIN_MS));
  return cache;
}

// Listings fan out to every shard; the merger asks each for pages as it
// needs them. A shard that cannot answer fails the whole listing: a partial
// answer would look like lost data. With several workers, a page that goes
// on from a listing another worker holds is handed to that one.
export async function list(req: IncomingMessage, res: ServerResponse, s3: S3Request, vb: VirtualBucket, signal: AbortSignal,
  handoff?: Handoff): Promise<void> {
  const request = parseListRequest(KINDS[s3.operation]!, vb.name, s3.query);
  if (handoff && request.tokenOwner !== undefined && await handoff.pass(request.tokenOwner, req, res, s3, signal)) return;
  const fetchers: ShardPageFetcher[] = vb.backends.map((b) => async (query, shardSignal) => {
    const r = await b.request({ method: 'GET', query: Object.entries(query), signal: shardSignal, operation: s3.operation });
    channels.listPage.publish({ shard: b.bucket });
    if (r.statusCode !== 200) {
      const text = (await readCapped(r.body, 64 * 1024).catch(() => Buffer.alloc(0))).toString();
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? String(r.statusCode);
      throw new S3Error('ServiceUnavailable', `Shard bucket ${b.bucket} failed the listing: ${code}`);
    }
    return r.body;
  });
  // A key on two shards (a rebalance under way, or a write after a ring
  // change) is listed as reads find it: the copy earliest among its owners.
  const rank = (key: string, shard: number): number => {
    const i = vb.owners(key).indexOf(vb.backends[shard]);
    return i < 0 ? vb.backends.length : i;
  };
  const pieces = mergeListing(request, fetchers, signal, { rank, cache: cacheOf(vb), owner: handoff?.self })[Symbol.asyncIterator]();
  let next = await pieces.next();
  res.writeHead(200, { 'content-type': 'application/xml' });
  while (!next.done) {
    if (!res.write(next.value)) await once(res, 'drain', { signal });
    next = await pieces.next();
  }
  res.end();
}
