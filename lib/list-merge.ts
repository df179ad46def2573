// A listing of the virtual bucket answered from all shards at once: each
// shard's pages are parsed with sax as they stream in, merged by key in UTF-8
// byte order, and cut to one page that is exactly what a single bucket holding
// every key would answer. The resume position handed to the client is the last
// entry emitted (a key or a common prefix); resuming asks every shard to start
// after it and drops anything not strictly after it, so a common prefix seen
// on several shards, or again after a resume, appears once.

import { crc32 } from 'node:zlib';
import sax from 'sax';
import { S3Error, isS3Error } from './errors';
import { type Entry, type EntryElement, type XmlNode, renderFields, renderListing } from './list-xml';
import type { ListingCache } from './list-cache';
import { feed } from './xml-feed';

export type ListKind = 'v1' | 'v2' | 'versions' | 'uploads';

export interface ListRequest {
  kind: ListKind;
  /** The virtual bucket, written in <Name>/<Bucket>. */
  bucket: string;
  prefix: string;
  delimiter: string;
  /** `max-keys` (`max-uploads` for uploads), clamped to 1000 as S3 does. */
  maxKeys: number;
  encodingUrl: boolean;
  /** V1 `marker`. */
  marker: string;
  /** V2 `start-after`. */
  startAfter: string;
  /** V2 `continuation-token` as the client sent it (echoed back). */
  continuationToken: string;
  /** The position `continuationToken` carries. */
  tokenAfter: string | undefined;
  /** The worker that holds the listing `continuationToken` goes on with, if it named one. */
  tokenOwner: number | undefined;
  /** V2 `fetch-owner`. */
  fetchOwner: boolean;
  /** Versions and uploads `key-marker`. */
  keyMarker: string;
  versionIdMarker: string;
  uploadIdMarker: string;
}

/**
 * Fetches one page of one shard's listing: `GET /<shard-bucket>?<query>`,
 * resolving with the body once the backend answered 200. `signal` aborts it.
 */
export type ShardPageFetcher = (query: Record<string, string>, signal: AbortSignal) => Promise<NodeJS.ReadableStream>;

/**
 * Which shard's copy of a key found on several shards is listed: the lowest
 * rank wins, the lower shard index among equals.
 */
export type ShardRank = (key: string, shard: number) => number;

const MAX_KEYS = 1000;
const MAX_KEY_BYTES = 1024;
// Tokens of version 2 also name the worker that holds the listing (see
// ListingCache), so that another worker can hand the next page to it.
const TOKEN_VERSION = 1;
const TOKEN_VERSION_OWNED = 2;

// ---------------------------------------------------------------------------
// Continuation tokens: version byte, [the owner's worker id, 4 bytes,] the
// UTF-8 of the last entry, CRC32 of all that. The CRC only tells our tokens
// from garbage and foreign tokens: a forged token is no more than a
// start-after the client could send anyway, and a worker that does not exist.

export function encodeListToken(after: string, owner?: number): string {
  const head = owner === undefined ? Buffer.from([TOKEN_VERSION]) : Buffer.alloc(5, TOKEN_VERSION_OWNED);
  if (owner !== undefined) head.writeUInt32BE(owner, 1);
  const body = Buffer.concat([head, Buffer.from(after, 'utf8')]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc32(body));
  return Buffer.concat([body, sum]).toString('base64url');
}

// ignoreBOM: a key may well begin with U+FEFF.
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function readListToken(token: string): { after: string; owner: number | undefined } {
  const invalid = new S3Error('InvalidArgument', 'The continuation token provided is incorrect');
  if (!/^[A-Za-z0-9_-]+$/.test(token) || token.length > 2 * MAX_KEY_BYTES) throw invalid;
  const raw = Buffer.from(token, 'base64url');
  const headLength = raw[0] === TOKEN_VERSION ? 1 : raw[0] === TOKEN_VERSION_OWNED ? 5 : 0;
  if (raw.toString('base64url') !== token || headLength === 0 || raw.length < headLength + 4) throw invalid;
  const body = raw.subarray(0, raw.length - 4);
  if (crc32(body) !== raw.readUInt32BE(raw.length - 4) || body.length - headLength > MAX_KEY_BYTES) throw invalid;
  try {
    return { after: utf8Strict.decode(body.subarray(headLength)), owner: headLength === 5 ? body.readUInt32BE(1) : undefined };
  } catch {
    throw invalid;
  }
}

/** The position a continuation token resumes after. */
export function decodeListToken(token: string): string {
  return readListToken(token).after;
}

// ---------------------------------------------------------------------------
// The client's query.

function parseMaxKeys(query: URLSearchParams, name: string): number {
  const raw = query.get(name);
  if (raw === null) return MAX_KEYS;
  if (!/^\d+$/.test(raw) || Number(raw) > 2147483647) {
    throw new S3Error('InvalidArgument', `Argument ${name} must be an integer between 0 and 2147483647`);
  }
  return Math.min(Number(raw), MAX_KEYS);
}

export function parseListRequest(kind: ListKind, bucket: string, query: URLSearchParams): ListRequest {
  const value = (name: string): string => query.get(name) ?? '';
  const encoding = value('encoding-type');
  if (encoding !== '' && encoding !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request');
  const byKind = (kinds: ListKind[], name: string): string => (kinds.includes(kind) ? value(name) : '');
  const req: ListRequest = {
    kind,
    bucket,
    prefix: value('prefix'),
    delimiter: value('delimiter'),
    maxKeys: parseMaxKeys(query, kind === 'uploads' ? 'max-uploads' : 'max-keys'),
    encodingUrl: encoding === 'url',
    marker: byKind(['v1'], 'marker'),
    startAfter: byKind(['v2'], 'start-after'),
    continuationToken: byKind(['v2'], 'continuation-token'),
    tokenAfter: undefined,
    tokenOwner: undefined,
    fetchOwner: byKind(['v2'], 'fetch-owner').toLowerCase() === 'true',
    keyMarker: byKind(['versions', 'uploads'], 'key-marker'),
    versionIdMarker: byKind(['versions'], 'version-id-marker'),
    uploadIdMarker: byKind(['uploads'], 'upload-id-marker'),
  };
  if (req.continuationToken) ({ after: req.tokenAfter, owner: req.tokenOwner } = readListToken(req.continuationToken));
  if (req.versionIdMarker && !req.keyMarker) {
    throw new S3Error('InvalidArgument', 'A version-id marker cannot be specified without a key marker.');
  }
  return req;
}

// ---------------------------------------------------------------------------
// Positions and order.

type Position = Pick<Entry, 'name' | 'bytes' | 'id'>;

function position(name: string, id?: string): Position {
  return { name, bytes: Buffer.from(name, 'utf8'), id: id || undefined };
}

/** Strictly after `p` in listing order. At the same name only further
 * versions/uploads of the key `p` stops inside of come after it; the backend
 * that owns that key orders them. */
function isAfter(e: Entry, p: Position | undefined): boolean {
  if (!p) return true;
  const c = Buffer.compare(e.bytes, p.bytes);
  if (c !== 0) return c > 0;
  return p.id !== undefined && e.element !== 'CommonPrefixes' && e.id !== p.id;
}

/** Where the listing resumes: undefined for the start, 'end' when nothing
 * under the prefix can follow. Positions outside the prefix are settled here
 * because some backends (MinIO) answer a marker not under the prefix with an
 * empty page. */
function startPosition(req: ListRequest): Position | undefined | 'end' {
  let p: Position | undefined;
  switch (req.kind) {
    case 'v1':
      p = req.marker ? position(req.marker) : undefined;
      break;
    case 'v2': {
      const a = req.startAfter ? position(req.startAfter) : undefined;
      const b = req.tokenAfter !== undefined ? position(req.tokenAfter) : undefined;
      p = a && b ? (Buffer.compare(a.bytes, b.bytes) >= 0 ? a : b) : (a ?? b);
      break;
    }
    case 'versions':
      p = req.keyMarker ? position(req.keyMarker, req.versionIdMarker) : undefined;
      break;
    case 'uploads':
      p = req.keyMarker ? position(req.keyMarker, req.uploadIdMarker) : undefined;
      break;
  }
  if (!p) return undefined;
  const prefix = Buffer.from(req.prefix, 'utf8');
  if (p.bytes.subarray(0, prefix.length).equals(prefix)) return p;
  return Buffer.compare(p.bytes, prefix) < 0 ? undefined : 'end';
}

// ---------------------------------------------------------------------------
// Backend pages.

const ROOT: Record<ListKind, string> = {
  v1: 'ListBucketResult',
  v2: 'ListBucketResult',
  versions: 'ListVersionsResult',
  uploads: 'ListMultipartUploadsResult',
};
const ENTRY_ELEMENTS: Record<ListKind, readonly EntryElement[]> = {
  v1: ['Contents', 'CommonPrefixes'],
  v2: ['Contents', 'CommonPrefixes'],
  versions: ['Version', 'DeleteMarker', 'CommonPrefixes'],
  uploads: ['Upload', 'CommonPrefixes'],
};
const PAGE_FIELDS = new Set([
  'IsTruncated', 'EncodingType', 'NextContinuationToken', 'NextKeyMarker', 'NextVersionIdMarker', 'NextUploadIdMarker',
]);
const ID_FIELD: Partial<Record<EntryElement, string>> = { Version: 'VersionId', DeleteMarker: 'VersionId', Upload: 'UploadId' };

function badGateway(detail: string): S3Error {
  return new S3Error('BadGateway', `The backend storage answered a listing with something that is not S3: ${detail}.`);
}

/** Names come url-encoded (`encoding-type=url`) so that any byte survives XML;
 * backends encode the way S3 does, a space as `+`. */
function decodeBackendName(text: string): Pick<Entry, 'name' | 'bytes'> {
  // The name is read back from the bytes, not taken from the parser: its
  // text is a slice of the whole page's, which a kept entry would hold on to.
  if (!/[%+]/.test(text)) {
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length > MAX_KEY_BYTES) throw badGateway('a key longer than 1024 bytes');
    return { name: bytes.toString('utf8'), bytes };
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (c === '%') {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw badGateway('malformed percent-encoding in a key');
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else if (c === '+') {
      bytes.push(0x20);
      i += 1;
    } else {
      let j = i + 1;
      while (j < text.length && text[j] !== '%' && text[j] !== '+') j++;
      bytes.push(...Buffer.from(text.slice(i, j), 'utf8'));
      i = j;
    }
  }
  const buf = Buffer.from(bytes);
  if (buf.length > MAX_KEY_BYTES) throw badGateway('a key longer than 1024 bytes');
  try {
    return { name: utf8Strict.decode(buf), bytes: buf };
  } catch {
    throw badGateway('a key that is not UTF-8');
  }
}

interface Page {
  entries: Entry[];
  /** The query fields that ask for this shard's next page; undefined on its last page. */
  next: Record<string, string> | undefined;
}

/** A page and the query that asked for it (the next query resumes from both). */
interface Fetched { page: Page; query: Record<string, string> }

/** One backend page, parsed with sax chunk by chunk as it streams. */
const MAX_DEPTH = 16;

class PageParser {
  // Line and column tracking costs about a tenth of sax's time per page, and
  // an answer that fails to parse is reported without them anyway.
  private readonly parser = sax.parser(true, { position: false });
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private readonly entries: Entry[] = [];
  private readonly fields = new Map<string, string>();
  private readonly capture: XmlNode[] = [];
  private depth = 0;
  private closed = false;

  /** `withOwner`: the client asked for owners (ListObjects V1 always does). */
  constructor(private readonly kind: ListKind, private readonly withOwner: boolean) {
    const p = this.parser;
    p.onerror = (err) => {
      throw badGateway(err.message.split('\n')[0]);
    };
    p.onopentag = (tag) => {
      this.depth += 1;
      // S3 listings nest four deep (Contents/Owner/ID); anything far deeper
      // is not a listing, and would cost stack to copy through.
      if (this.depth > MAX_DEPTH) throw badGateway('XML nested deeper than any listing');
      if (this.depth === 1) {
        if (tag.name !== ROOT[kind]) throw badGateway(`<${tag.name}> where <${ROOT[kind]}> was expected`);
      } else if (this.capture.length > 0 || (this.depth === 2 && this.wanted(tag.name))) {
        const node: XmlNode = { name: tag.name, text: '', children: [] };
        this.capture[this.capture.length - 1]?.children.push(node);
        this.capture.push(node);
      }
    };
    p.ontext = p.oncdata = (text) => {
      const top = this.capture[this.capture.length - 1];
      if (top) top.text += text;
    };
    p.onclosetag = () => {
      if (this.capture.length > 0) {
        const node = this.capture.pop()!;
        if (this.capture.length === 0) this.collect(node);
      }
      this.depth -= 1;
      if (this.depth === 0) this.closed = true;
    };
  }

  private wanted(name: string): boolean {
    return PAGE_FIELDS.has(name) || (ENTRY_ELEMENTS[this.kind] as readonly string[]).includes(name);
  }

  private collect(node: XmlNode): void {
    if (PAGE_FIELDS.has(node.name)) {
      this.fields.set(node.name, node.text);
      return;
    }
    const element = node.name as EntryElement;
    const child = (name: string): string | undefined => node.children.find((c) => c.name === name)?.text;
    const nameText = child(element === 'CommonPrefixes' ? 'Prefix' : 'Key');
    if (nameText === undefined) throw badGateway(`<${element}> without its name`);
    const idField = ID_FIELD[element];
    const id = idField ? child(idField) : undefined;
    if (idField && id === undefined) throw badGateway(`<${element}> without <${idField}>`);
    const { name, bytes } = decodeBackendName(nameText);
    this.entries.push({ element, name, bytes, id, fields: renderFields(node.children, this.withOwner) });
  }

  write(chunk: string | Buffer): void {
    feed(this.parser, typeof chunk === 'string' ? chunk : this.decode(chunk));
  }

  /** UTF-8 across chunk boundaries; no chunk flushes the end. */
  private decode(chunk?: Buffer): string {
    try {
      return chunk ? this.decoder.decode(chunk, { stream: true }) : this.decoder.decode();
    } catch {
      throw badGateway('a body that is not UTF-8');
    }
  }

  /** Ends the page: its entries in listing order, and how to ask for the next one. */
  finish(): Page {
    feed(this.parser, this.decode());
    this.parser.close();
    if (!this.closed) throw badGateway('a truncated document');
    if (this.fields.get('EncodingType') !== 'url') throw badGateway('encoding-type=url was not honoured');
    const truncated = this.fields.get('IsTruncated');
    if (truncated !== 'true' && truncated !== 'false') throw badGateway('no <IsTruncated>');
    // A page lists its entries and its common prefixes each in order, but one
    // after the other (MinIO even puts the prefixes first); a stable sort by
    // name keeps a key's versions or uploads in the backend's order.
    const entries = this.entries.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    return { entries, next: truncated === 'true' ? this.nextQuery() : undefined };
  }

  private nextQuery(): Record<string, string> {
    const need = (field: string): string => {
      const v = this.fields.get(field);
      if (!v) throw badGateway(`a truncated page without <${field}>`);
      return v;
    };
    if (this.kind === 'v1' || this.kind === 'v2') return { 'continuation-token': need('NextContinuationToken') };
    // Listing the uploads of one key, MinIO sends an empty NextKeyMarker: the
    // page's last upload names the key.
    const marker = this.fields.get('NextKeyMarker');
    const key = marker ? decodeBackendName(marker).name : this.entries[this.entries.length - 1]?.name;
    if (key === undefined) throw badGateway('a truncated page without <NextKeyMarker>');
    const next: Record<string, string> = { 'key-marker': key };
    const idField = this.kind === 'versions' ? 'NextVersionIdMarker' : 'NextUploadIdMarker';
    const id = this.fields.get(idField);
    if (id) next[this.kind === 'versions' ? 'version-id-marker' : 'upload-id-marker'] = id;
    return next;
  }
}

async function readPage(body: NodeJS.ReadableStream, kind: ListKind, withOwner: boolean): Promise<Page> {
  const parser = new PageParser(kind, withOwner);
  try {
    for await (const chunk of body) parser.write(chunk);
  } catch (err) {
    if (isS3Error(err)) throw err;
    throw new S3Error('ServiceUnavailable', `A backend listing broke off: ${(err as Error).message}`);
  }
  return parser.finish();
}

// ---------------------------------------------------------------------------
// One shard's listing as a sequence of entries, a page at a time.

class ShardCursor {
  private entries: Entry[] = [];
  private pos = 0;
  private next: Record<string, string> | undefined;
  private fetchPage!: ShardPageFetcher;
  private controller!: AbortController;
  private inFlight = false;
  private released = false;
  private ahead: { fetched: Promise<Fetched>; controller: AbortController } | undefined;
  /** The client asked for owners (ListObjects V1 always does). */
  private readonly withOwner: boolean;

  constructor(
    readonly index: number,
    fetchPage: ShardPageFetcher,
    private readonly kind: ListKind,
    private readonly base: Record<string, string>,
    first: Record<string, string>,
  ) {
    this.next = first;
    this.withOwner = kind === 'versions' || kind === 'uploads' || base['fetch-owner'] === 'true';
    this.serve(fetchPage);
  }

  /** Serves a client request: a cursor kept from an earlier page goes on
   * with this request's fetcher, to be released with it. */
  serve(fetchPage: ShardPageFetcher): this {
    this.fetchPage = fetchPage;
    this.controller = new AbortController();
    this.released = false;
    return this;
  }

  get busy(): boolean {
    return this.inFlight;
  }

  /** Entries fetched and not used yet. */
  get buffered(): number {
    return this.entries.length - this.pos;
  }

  get readingAhead(): boolean {
    return this.ahead !== undefined;
  }

  get head(): Entry | undefined {
    return this.entries[this.pos];
  }

  /** Its page is used up and the backend said there is more. */
  get needsPage(): boolean {
    return this.pos >= this.entries.length && this.next !== undefined;
  }

  advance(): void {
    this.pos += 1;
  }

  skipUpTo(p: Position): void {
    while (this.head && !isAfter(this.head, p)) this.pos += 1;
  }

  /** Lets go of the entries already used. */
  compact(): void {
    this.entries = this.entries.slice(this.pos);
    this.pos = 0;
  }

  async load(maxKeys: number): Promise<void> {
    if (this.released) throw new S3Error('ServiceUnavailable', 'The listing was released.');
    this.inFlight = true;
    try {
      const fetched = await this.takeAhead() ?? await this.fetch(this.query(maxKeys), this.controller.signal);
      this.entries = fetched.page.entries;
      this.pos = 0;
      this.next = fetched.page.next && this.resumeAfter(fetched.page, fetched.query);
    } finally {
      this.inFlight = false;
    }
  }

  /** Starts fetching the next page while the client reads this one, so that
   * the client's next request finds it here or on its way. */
  readAhead(maxKeys: number): void {
    if (this.next === undefined || this.ahead || this.inFlight) return;
    const controller = new AbortController();
    const fetched = this.fetch(this.query(maxKeys), controller.signal);
    // A read-ahead that failed is fetched again when it is needed.
    fetched.catch(() => undefined);
    this.ahead = { fetched, controller };
  }

  /** The page read ahead, if it came: waiting for it ends with this request. */
  private async takeAhead(): Promise<Fetched | undefined> {
    const ahead = this.ahead;
    if (!ahead) return undefined;
    this.ahead = undefined;
    const onAbort = () => ahead.controller.abort();
    this.controller.signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await ahead.fetched;
    } catch {
      this.controller.signal.throwIfAborted();
      return undefined;
    } finally {
      this.controller.signal.removeEventListener('abort', onAbort);
    }
  }

  private query(maxKeys: number): Record<string, string> {
    return { ...this.base, ...this.next, [this.kind === 'uploads' ? 'max-uploads' : 'max-keys']: String(maxKeys) };
  }

  private async fetch(query: Record<string, string>, signal: AbortSignal): Promise<Fetched> {
    return { page: await readPage(await this.fetchPage(query, signal), this.kind, this.withOwner), query };
  }

  // A page that ends on a common prefix resumes after everything under it:
  // MinIO's own marker would walk that prefix key by key, and with some
  // delimiters hands back the same marker forever (versions and uploads
  // too). A token that comes back unchanged on an empty page, or markers
  // that come back as they were asked, are a backend going round in circles.
  private resumeAfter(page: Page, query: Record<string, string>): Record<string, string> {
    const last = page.entries[page.entries.length - 1];
    const next = page.next!;
    if (last?.element === 'CommonPrefixes') {
      return { [this.kind === 'v1' || this.kind === 'v2' ? 'start-after' : 'key-marker']: last.name + '\u{10FFFF}' };
    }
    const unchanged = (name: string) => next[name] === query[name];
    const circling = next['continuation-token'] !== undefined
      ? !last && unchanged('continuation-token')
      : unchanged('key-marker') && unchanged('version-id-marker') && unchanged('upload-id-marker');
    if (circling) throw new S3Error('BadGateway', 'A shard answered a listing page that makes no progress.');
    return next;
  }

  /** Releases the backend request still open, if any. */
  release(): void {
    this.released = true;
    if (this.inFlight) this.controller.abort();
  }
}

/** Cursors ordered by their head entry. */
class CursorHeap {
  private readonly items: ShardCursor[] = [];

  constructor(private readonly rank?: ShardRank) {}

  // Of one name the first popped is kept, the others are dropped as not after it.
  private less(a: ShardCursor, b: ShardCursor): boolean {
    const c = Buffer.compare(a.head!.bytes, b.head!.bytes);
    if (c !== 0) return c < 0;
    if (this.rank && a.head!.element !== 'CommonPrefixes') {
      const r = this.rank(a.head!.name, a.index) - this.rank(b.head!.name, b.index);
      if (r !== 0) return r < 0;
    }
    return a.index < b.index;
  }

  peek(): ShardCursor | undefined {
    return this.items[0];
  }

  push(c: ShardCursor): void {
    const items = this.items;
    let i = items.push(c) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  /** The top cursor's head changed: restore the order, dropping it if it has no head now. */
  fixTop(): void {
    const items = this.items;
    if (!items[0].head) {
      const tail = items.pop()!;
      if (items.length === 0) return;
      items[0] = tail;
    }
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && this.less(items[l], items[m])) m = l;
      if (r < items.length && this.less(items[r], items[m])) m = r;
      if (m === i) return;
      [items[i], items[m]] = [items[m], items[i]];
      i = m;
    }
  }
}

function backendBase(req: ListRequest): Record<string, string> {
  const q: Record<string, string> =
    req.kind === 'versions' ? { versions: '' } :
    req.kind === 'uploads' ? { uploads: '' } :
    { 'list-type': '2', ...(req.kind === 'v1' || req.fetchOwner ? { 'fetch-owner': 'true' } : {}) };
  if (req.prefix) q.prefix = req.prefix;
  if (req.delimiter) q.delimiter = req.delimiter;
  q['encoding-type'] = 'url';
  return q;
}

function backendStart(req: ListRequest, after: Position | undefined, mayHoldKey = true): Record<string, string> {
  if (!after) return {};
  if (req.kind === 'v1' || req.kind === 'v2') return { 'start-after': after.name };
  const q: Record<string, string> = { 'key-marker': after.name };
  if (after.id !== undefined && mayHoldKey) q[req.kind === 'versions' ? 'version-id-marker' : 'upload-id-marker'] = after.id;
  return q;
}

class Merger {
  private readonly cursors: ShardCursor[];
  private readonly heap: CursorHeap;
  private readonly page: Entry[] = [];
  /** Cursors whose page is used up, fetched only when their next entry is needed. */
  private waiting: ShardCursor[] = [];
  /** This page goes on from an earlier one: the client is paging through. */
  private readonly resumed: boolean;

  /** `kept`: the cursors an earlier page left at `start`, by shard; a shard
   * without one starts over after `start`. */
  constructor(private readonly req: ListRequest, private readonly start: Position | undefined, shards: ShardPageFetcher[],
    rank?: ShardRank, kept?: ListingState) {
    this.heap = new CursorHeap(rank);
    const base = backendBase(req);
    // Only a shard that may hold the marker's key gets its version or upload
    // id: given a key it does not have, MinIO skips the key after it too.
    const mayHold = (i: number) => !rank || !start || rank(start.name, i) < shards.length;
    this.resumed = kept !== undefined;
    this.cursors = shards.map((fetch, i) => kept?.cursors[i]?.serve(fetch) ??
      new ShardCursor(i, fetch, req.kind, base, backendStart(req, start, mayHold(i))));
  }

  /** Backend max-keys: what this page still needs, plus one entry to tell
   * whether more follow, plus `extra`. */
  private budget(extra = 0): number {
    return Math.min(MAX_KEYS, this.req.maxKeys - this.page.length + 1 + extra);
  }

  // Keys spread evenly over the shards, so each first page asks for its
  // share with room to spare rather than the whole page from every shard:
  // with 8 shards that is an eighth of the backend work. A shard that runs
  // short is asked for more, as any used-up shard is.
  private firstBudget(): number {
    const extra = this.start && this.req.delimiter ? 1 : 0;
    return Math.min(this.budget(extra), this.share() + 1 + extra);
  }

  private share(): number {
    return Math.ceil((this.req.maxKeys * 1.25) / this.cursors.length) + 16;
  }

  async run(signal: AbortSignal): Promise<{ entries: Entry[]; truncated: boolean }> {
    // A shard resumed after a common prefix may answer that prefix again first.
    await this.load(this.cursors, this.firstBudget(), signal);
    for (const c of this.cursors) if (c.head) this.heap.push(c);
    let last = this.start;
    while (this.page.length < this.req.maxKeys) {
      const e = await this.pop(signal);
      if (!e) return { entries: this.page, truncated: false };
      if (!isAfter(e, last)) continue;
      this.page.push(e);
      last = e;
    }
    return { entries: this.page, truncated: await this.anyAfter(last!) };
  }

  /** Fetches the next page of every given cursor that has used up its page,
   * all at once, until each has an entry or is done. */
  private async load(cursors: ShardCursor[], maxKeys: number, signal: AbortSignal): Promise<void> {
    for (let pending = cursors.filter((c) => c.needsPage); pending.length > 0; pending = pending.filter((c) => c.needsPage)) {
      await Promise.all(pending.map((c) => c.load(maxKeys)));
      signal.throwIfAborted();
    }
  }

  /** The smallest entry of all shards. */
  private async pop(signal: AbortSignal): Promise<Entry | undefined> {
    if (this.waiting.length > 0) {
      const waiting = this.waiting;
      this.waiting = [];
      await this.load(waiting, this.budget(), signal);
      for (const c of waiting) if (c.head) this.heap.push(c);
    }
    const top = this.heap.peek();
    if (!top) return undefined;
    const e = top.head!;
    top.advance();
    this.heap.fixTop();
    if (top.needsPage) this.waiting.push(top);
    return e;
  }

  /** Whether any shard has an entry after `last`: buffered entries first,
   * then the next pages of the used-up shards, settling on the first found. */
  private async anyAfter(last: Position): Promise<boolean> {
    for (const c of this.cursors) {
      c.skipUpTo(last);
      if (c.head) return true;
    }
    const probes = this.cursors.filter((c) => c.needsPage).map(async (c) => {
      while (c.needsPage) {
        await c.load(1);
        c.skipUpTo(last);
      }
      return c.head !== undefined;
    });
    return new Promise<boolean>((resolve, reject) => {
      let left = probes.length;
      if (left === 0) resolve(false);
      for (const probe of probes) {
        probe.then((found) => {
          left -= 1;
          if (found || left === 0) resolve(found);
        }, reject);
      }
    });
  }

  /** What the next page, starting after `last`, goes on from. Once a client
   * is paging through (not after a first page: many clients ask for one
   * page only), a shard that holds less than its share of a page reads
   * ahead. A cursor still fetching (a probe of anyAfter no longer needed)
   * is left out: its shard starts over. The weight counts entries held and
   * on their way. */
  keep(last: Position): { state: ListingState; weight: number } {
    const share = Math.min(MAX_KEYS, this.share() + 1);
    let weight = 0;
    const cursors = this.cursors.map((c) => {
      if (c.busy) return undefined;
      c.skipUpTo(last);
      c.compact();
      if (this.resumed && c.buffered < share) c.readAhead(share);
      weight += c.buffered + (c.readingAhead ? share : 0);
      return c;
    });
    return { state: { cursors }, weight };
  }

  release(): void {
    for (const c of this.cursors) c.release();
  }
}

/** Where each shard's listing stands after a page: kept in a ListingCache. */
export interface ListingState {
  readonly cursors: readonly (ShardCursor | undefined)[];
}

/** Which cached listing a request goes on from: the same backend query, resumed at the same position. */
function cacheKey(req: ListRequest, start: Position | undefined): string {
  return JSON.stringify([backendBase(req), start?.name ?? null, start?.id ?? null]);
}

export interface MergeOptions {
  rank?: ShardRank;
  /** Listings in progress of this set of shards. */
  cache?: ListingCache<ListingState>;
  /** This worker's id, written into V2 tokens: the worker whose cache holds the listing. */
  owner?: number;
}

/**
 * The client's answer as XML pieces. Every backend page it needs is read
 * before the first piece, so a failure (backend fetch rejected, malformed
 * backend XML -> BadGateway, `signal` aborted) always comes before it.
 */
export async function* mergeListing(
  req: ListRequest,
  shards: ShardPageFetcher[],
  signal: AbortSignal,
  { rank, cache, owner }: MergeOptions = {},
): AsyncIterable<string> {
  signal.throwIfAborted();
  const start = startPosition(req);
  let result: { entries: Entry[]; truncated: boolean } = { entries: [], truncated: false };
  // S3 answers max-keys=0 with an empty page that is not truncated.
  if (req.maxKeys > 0 && start !== 'end') {
    const merger = new Merger(req, start, shards, rank, cache?.take(cacheKey(req, start)));
    const onAbort = (): void => merger.release();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      result = await merger.run(signal);
      if (cache && result.truncated) {
        const last = result.entries[result.entries.length - 1];
        const { state, weight } = merger.keep(last);
        cache.put(cacheKey(req, last), state, weight);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      merger.release();
    }
  }
  const { entries, truncated } = result;
  const token = req.kind === 'v2' && truncated ? encodeListToken(entries[entries.length - 1].name, owner) : undefined;
  yield* renderListing(req, entries, truncated, token);
}
