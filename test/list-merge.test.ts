import t from 'tap';
import sax from 'sax';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { S3Error } from '../lib/errors';
import {
  decodeListToken,
  encodeListToken,
  type ListKind,
  type ListingState,
  mergeListing,
  parseListRequest,
  type ShardPageFetcher,
} from '../lib/list-merge';
import { ListingCache } from '../lib/list-cache';

const BUCKET = 'virtual-bucket';

// ---------------------------------------------------------------------------
// Seeded randomness, so that a failure names the seed that reproduces it.

class Rng {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let x = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

const cmp = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

// '\uFF5A' sorts before '😀' in UTF-8 but after it in UTF-16.
const PIECES = ['a', 'b', 'c', '/', 'a/', 'b/', 'x/y/', '+', ' ', '%', '%41', '&', '<', '>', '"', "'", ':', '*', '~',
  'é', '€', '😀', '\uFF5A', '\uE000', '\uFEFF', 'ab', '--', '0', 'Z', '\t', '\n', '\r'];
// Not representable in XML 1.0 at all: only sensible with encoding-type=url.
const CONTROL = ['\u0001', '\u001f', '\u007f'];

function randomKeys(rng: Rng, count: number, control: boolean): string[] {
  const pieces = control ? [...PIECES, ...CONTROL] : PIECES;
  const keys = new Set<string>();
  while (keys.size < count) {
    const existing = [...keys];
    let key: string;
    if (existing.length > 0 && rng.bool(0.35)) {
      // Keys that are prefixes of others, and trailing delimiters.
      key = rng.pick(existing) + rng.pick(['/', ...pieces]);
    } else {
      key = '';
      for (let n = 1 + rng.int(5); n > 0; n--) key += rng.pick(pieces);
    }
    keys.add(key);
  }
  return [...keys];
}

// ---------------------------------------------------------------------------
// A reference model of one bucket, and fake shards serving it as S3 does.

interface ModelEntry {
  key: string;
  element: 'Contents' | 'Version' | 'DeleteMarker' | 'Upload';
  id?: string;
}

interface Row {
  name: string;
  cp: boolean;
  entry?: ModelEntry;
}

/** S3's rows over entries sorted by key: keys, or the common prefix they roll up to. */
function rollup(entries: readonly ModelEntry[], prefix: string, delimiter: string): Row[] {
  const rows: Row[] = [];
  for (const e of entries) {
    if (!e.key.startsWith(prefix)) continue;
    const rest = e.key.slice(prefix.length);
    const at = delimiter ? rest.indexOf(delimiter) : -1;
    if (at >= 0) {
      const name = prefix + rest.slice(0, at + delimiter.length);
      const prev = rows[rows.length - 1];
      if (!(prev?.cp && prev.name === name)) rows.push({ name, cp: true });
    } else {
      rows.push({ name: e.key, cp: false, entry: e });
    }
  }
  return rows;
}

function sortEntries(entries: ModelEntry[]): ModelEntry[] {
  return entries.sort((a, b) => cmp(a.key, b.key));
}

const etagOf = (key: string): string => Buffer.from(key).toString('hex').slice(0, 16).padEnd(16, '0');
const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

function s3Encode(s: string, spaceAsPlus: boolean, lowerHex: boolean): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (b < 0x80 && /[A-Za-z0-9\-_.~/]/.test(c)) out += c;
    else if (b === 0x20 && spaceAsPlus) out += '+';
    else {
      const hex = b.toString(16).padStart(2, '0');
      out += `%${lowerHex ? hex : hex.toUpperCase()}`;
    }
  }
  return out;
}

type Query = Record<string, string>;

interface BackendCall {
  query: Query;
  signal: AbortSignal;
}

class FakeShard {
  readonly requests: BackendCall[] = [];
  /** Entries served per request, for the "reads no more than it needs" checks. */
  readonly served: number[] = [];
  entries: ModelEntry[] = [];
  pageLimit = 1000;
  /** With start-after inside or at a common prefix, answer that prefix again (S3 may). */
  repeatsPrefix = false;
  spaceAsPlus = true;
  lowerHex = false;
  prefixesFirst = false;
  encodingTypeLast = false;
  pretty = false;
  alwaysOwner = false;
  /** Ends exactly at the last row with IsTruncated true, then serves an empty page. */
  emptyTruncatedEnd = false;
  /** Bodies stream in pieces of 1 to this many bytes, cut anywhere (inside a UTF-8 sequence too). */
  maxPiece = 16;
  hang: (n: number) => boolean = () => false;
  fail: (n: number) => Error | undefined = () => undefined;

  constructor(private readonly kind: 'objects' | 'versions' | 'uploads', private readonly rng: Rng) {}

  readonly fetch: ShardPageFetcher = async (query, signal) => {
    const n = this.requests.push({ query, signal }) - 1;
    for (let i = this.rng.int(3); i > 0; i--) await new Promise((r) => setImmediate(r));
    if (signal.aborted) throw new Error('aborted');
    const err = this.fail(n);
    if (err) throw err;
    if (this.hang(n)) {
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    }
    const xml = this.answer(query);
    const body = Buffer.from(xml, 'utf8');
    const pieces: Buffer[] = [];
    for (let i = 0; i < body.length;) {
      const size = 1 + this.rng.int(this.maxPiece);
      pieces.push(body.subarray(i, i + size));
      i += size;
    }
    const stream = Readable.from(pieces);
    // As undici does: the listener goes when the body is done, or a cursor
    // fetching many pages would pile them up on its signal.
    const onAbort = () => stream.destroy(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', onAbort));
    return stream;
  };

  private answer(q: Query): string {
    const expected = new Set(['prefix', 'delimiter', 'encoding-type']);
    if (q['encoding-type'] !== 'url') throw new Error(`backend asked without encoding-type=url: ${JSON.stringify(q)}`);
    const maxName = this.kind === 'uploads' ? 'max-uploads' : 'max-keys';
    expected.add(maxName);
    const max = Number(q[maxName]);
    if (!/^\d+$/.test(q[maxName] ?? '') || max < 1 || max > 1000) throw new Error(`backend asked ${maxName}=${q[maxName]}`);
    const prefix = q.prefix ?? '';
    const delimiter = q.delimiter ?? '';
    const limit = Math.min(max, this.pageLimit);
    let rows: Row[];
    if (this.kind === 'objects') {
      for (const k of ['list-type', 'start-after', 'continuation-token', 'fetch-owner']) expected.add(k);
      if (q['list-type'] !== '2') throw new Error('backend asked without list-type=2');
      const all = rollup(this.entries, prefix, delimiter);
      if (q['continuation-token'] !== undefined) {
        const after = Buffer.from(q['continuation-token'].slice('fake-'.length), 'base64').toString('utf8');
        rows = all.filter((r) => cmp(r.name, after) > 0);
      } else if (q['start-after'] !== undefined) {
        const after = q['start-after'];
        rows = rollup(this.entries.filter((e) => cmp(e.key, after) > 0), prefix, delimiter);
        if (!this.repeatsPrefix) rows = rows.filter((r) => cmp(r.name, after) > 0);
      } else {
        rows = all;
      }
    } else {
      const idName = this.kind === 'versions' ? 'version-id-marker' : 'upload-id-marker';
      expected.add(this.kind).add('key-marker').add(idName);
      if (q[this.kind] !== '') throw new Error(`backend asked without ?${this.kind}`);
      const keyMarker = q['key-marker'];
      let entries = this.entries;
      if (keyMarker !== undefined) {
        const id = q[idName];
        const at = id === undefined ? -1 : entries.findIndex((e) => e.key === keyMarker && e.id === id);
        entries = entries.filter((e, i) => cmp(e.key, keyMarker) > 0 || (at >= 0 && e.key === keyMarker && i > at));
      }
      rows = rollup(entries, prefix, delimiter);
      if (keyMarker !== undefined) rows = rows.filter((r) => !r.cp || cmp(r.name, keyMarker) > 0);
    }
    for (const k of Object.keys(q)) if (!expected.has(k)) throw new Error(`unexpected backend parameter ${k}`);
    const page = rows.slice(0, limit);
    const truncated = rows.length > limit || (this.emptyTruncatedEnd && rows.length === limit && limit > 0);
    this.served.push(page.length);
    const owner = this.kind !== 'objects' || q['fetch-owner'] === 'true' || this.alwaysOwner;
    return this.document(page, truncated, q, owner);
  }

  private document(page: Row[], truncated: boolean, q: Query, owner: boolean): string {
    const nl = this.pretty ? '\n  ' : '';
    const enc = (s: string): string => s3Encode(s, this.spaceAsPlus, this.lowerHex);
    const ownerXml = owner ? `<Owner>${nl}<ID>0123abcd</ID>${nl}<DisplayName>o&amp;wner</DisplayName></Owner>` : '';
    const entries = page.filter((r) => !r.cp).map((r) => {
      const e = r.entry!;
      const k = `<Key>${enc(e.key)}</Key>`;
      const common = `<LastModified>2024-01-02T03:04:05.000Z</LastModified>`;
      const size = `<Size>${Buffer.byteLength(e.key)}</Size>`;
      const etag = `<ETag>&quot;${etagOf(e.key)}&quot;</ETag>`;
      switch (e.element) {
        case 'Contents':
          return `<Contents>${nl}${k}${common}${etag}${size}${ownerXml}<StorageClass>STANDARD</StorageClass>` +
            `<ChecksumAlgorithm>CRC32</ChecksumAlgorithm></Contents>`;
        case 'Version':
          return `<Version>${k}<VersionId>${e.id}</VersionId><IsLatest>false</IsLatest>${common}${etag}${size}${ownerXml}` +
            `<StorageClass>STANDARD</StorageClass></Version>`;
        case 'DeleteMarker':
          return `<DeleteMarker>${k}<VersionId>${e.id}</VersionId><IsLatest>true</IsLatest>${common}${ownerXml}</DeleteMarker>`;
        case 'Upload':
          return `<Upload>${k}<UploadId>${e.id}</UploadId><Initiator><ID>i</ID><DisplayName>i</DisplayName></Initiator>` +
            `${ownerXml}<StorageClass>STANDARD</StorageClass><Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>`;
      }
    }).join(nl);
    const prefixes = page.filter((r) => r.cp).map((r) => `<CommonPrefixes><Prefix>${enc(r.name)}</Prefix></CommonPrefixes>`).join(nl);
    const body = this.prefixesFirst ? prefixes + nl + entries : entries + nl + prefixes;
    const last = page[page.length - 1];
    const encType = '<EncodingType>url</EncodingType>';
    const head = `<Name>shard</Name><Prefix>${enc(q.prefix ?? '')}</Prefix>`;
    const isTruncated = `<IsTruncated>${truncated}</IsTruncated>`;
    // MinIO writes EncodingType last.
    const [early, late] = this.encodingTypeLast ? ['', encType] : [encType, ''];
    let root: string;
    let fields: string;
    if (this.kind === 'objects') {
      root = 'ListBucketResult';
      const token = truncated ? `<NextContinuationToken>fake-${Buffer.from(last.name).toString('base64')}</NextContinuationToken>` : '';
      fields = `${head}${token}<KeyCount>${page.length}</KeyCount><MaxKeys>${q['max-keys']}</MaxKeys>${early}${isTruncated}`;
    } else {
      root = this.kind === 'versions' ? 'ListVersionsResult' : 'ListMultipartUploadsResult';
      const idName = this.kind === 'versions' ? 'NextVersionIdMarker' : 'NextUploadIdMarker';
      const next = truncated
        ? `<NextKeyMarker>${enc(last.name)}</NextKeyMarker>${last.cp ? '' : `<${idName}>${last.entry!.id}</${idName}>`}`
        : '';
      fields = `${head}<KeyMarker></KeyMarker>${next}${early}${isTruncated}`;
    }
    return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
      `${nl}${fields}${nl}${body}${nl}${late}</${root}>`;
  }
}

function randomShards(rng: Rng, kind: 'objects' | 'versions' | 'uploads', entries: ModelEntry[], count: number): FakeShard[] {
  const shards = Array.from({ length: count }, () => {
    const s = new FakeShard(kind, rng);
    s.pageLimit = rng.bool(0.7) ? 1 + rng.int(4) : 1000;
    s.repeatsPrefix = kind === 'objects' && rng.bool();
    s.spaceAsPlus = rng.bool();
    s.lowerHex = rng.bool();
    s.prefixesFirst = rng.bool();
    s.encodingTypeLast = rng.bool();
    s.pretty = rng.bool();
    s.alwaysOwner = rng.bool(0.2);
    s.emptyTruncatedEnd = rng.bool(0.2);
    s.maxPiece = rng.pick([8, 64, 1024]);
    return s;
  });
  // Each key lives on exactly one shard.
  const home = new Map<string, FakeShard>();
  for (const e of entries) {
    if (!home.has(e.key)) home.set(e.key, rng.pick(shards));
    home.get(e.key)!.entries.push(e);
  }
  for (const s of shards) sortEntries(s.entries);
  return shards;
}

// ---------------------------------------------------------------------------
// Running the merger and reading its answer back with sax.

interface Item {
  element: string;
  fields: Map<string, string>;
  hasOwner: boolean;
}

interface Doc {
  root: string;
  xmlns: string | undefined;
  top: Map<string, string>;
  order: string[];
  items: Item[];
}

function parseDoc(xml: string): Doc {
  const parser = sax.parser(true);
  const doc: Doc = { root: '', xmlns: undefined, top: new Map(), order: [], items: [] };
  const stack: string[] = [];
  let text = '';
  let item: Item | undefined;
  parser.onerror = (err) => {
    throw err;
  };
  parser.onopentag = (tag) => {
    stack.push(tag.name);
    text = '';
    if (stack.length === 1) {
      doc.root = tag.name;
      doc.xmlns = (tag.attributes as Record<string, string>).xmlns;
    } else if (stack.length === 2) {
      doc.order.push(tag.name);
      if (['Contents', 'CommonPrefixes', 'Version', 'DeleteMarker', 'Upload'].includes(tag.name)) {
        item = { element: tag.name, fields: new Map(), hasOwner: false };
        doc.items.push(item);
      }
    } else if (stack.length === 3 && item && tag.name === 'Owner') {
      item.hasOwner = true;
    }
  };
  parser.ontext = (s) => {
    text += s;
  };
  parser.onclosetag = (name) => {
    if (stack.length === 2 && !item) {
      if (doc.top.has(name)) throw new Error(`<${name}> twice`);
      doc.top.set(name, text);
    } else if (stack.length === 2) {
      item = undefined;
    } else if (stack.length === 3 && item) {
      item.fields.set(name, text);
    } else if (stack.length === 4 && item) {
      item.fields.set(`${stack[2]}.${name}`, text);
    }
    stack.pop();
    text = '';
  };
  if (!xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>')) throw new Error('no XML declaration');
  parser.write(xml).close();
  if (stack.length !== 0 || !doc.root) throw new Error('document not closed');
  return doc;
}

async function listOnce(kind: ListKind, query: Query, shards: FakeShard[], signal = new AbortController().signal,
  cache?: ListingCache<ListingState>): Promise<Doc> {
  const req = parseListRequest(kind, BUCKET, new URLSearchParams(query));
  const pieces: string[] = [];
  for await (const piece of mergeListing(req, shards.map((s) => s.fetch), signal, { cache })) pieces.push(piece);
  return parseDoc(pieces.join(''));
}

function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(what);
}

const CANONICAL_URL = /^(?:[A-Za-z0-9\-_.~/]|%[0-9A-F]{2})*$/;

function decodeName(s: string, url: boolean): string {
  if (!url) return s;
  check(CANONICAL_URL.test(s), `not canonically url-encoded: ${JSON.stringify(s)}`);
  return decodeURIComponent(s);
}

const show = (rows: readonly Row[]): string => JSON.stringify(rows.map((r) => (r.cp ? `[${r.name}]` : r.name)));

/** The page's rows in listing order, checking each kind is sorted on its own. */
function rowsOf(doc: Doc, url: boolean): { rows: Row[]; items: Item[] } {
  const entries = doc.items.filter((i) => i.element !== 'CommonPrefixes');
  const prefixes = doc.items.filter((i) => i.element === 'CommonPrefixes');
  const firstPrefix = doc.order.indexOf('CommonPrefixes');
  check(firstPrefix < 0 || doc.order.slice(firstPrefix).every((n) => n === 'CommonPrefixes'), 'entries after common prefixes');
  const rows: Row[] = [];
  for (const i of entries) rows.push({ name: decodeName(i.fields.get('Key') ?? '', url), cp: false });
  for (const i of prefixes) rows.push({ name: decodeName(i.fields.get('Prefix') ?? '', url), cp: true });
  const sorted = [...rows].sort((a, b) => cmp(a.name, b.name));
  for (let i = 1; i < entries.length; i++) check(cmp(rows[i - 1].name, rows[i].name) <= 0, 'entries out of order');
  for (let i = entries.length + 1; i < rows.length; i++) check(cmp(rows[i - 1].name, rows[i].name) < 0, 'prefixes out of order');
  return { rows: sorted, items: [...entries, ...prefixes].sort((a, b) => cmp(rowName(a, url), rowName(b, url))) };
}

const rowName = (i: Item, url: boolean): string => decodeName(i.fields.get(i.element === 'CommonPrefixes' ? 'Prefix' : 'Key') ?? '', url);

function sameRows(got: Row[], want: Row[], what: string): void {
  check(got.length === want.length && got.every((r, i) => r.name === want[i].name && r.cp === want[i].cp),
    `${what}: got ${show(got)}, want ${show(want)}`);
}

// ---------------------------------------------------------------------------
// Walking every page of a listing against the reference.

interface ObjectsWalk {
  kind: 'v1' | 'v2';
  prefix: string;
  delimiter: string;
  url: boolean;
  start: string | undefined;
  fetchOwner: boolean;
  maxKeys: number;
  sendEmptyPrefix: boolean;
  /** Pages go on from the state the previous page left in a listing cache. */
  cached: boolean;
}

async function walkObjects(all: ModelEntry[], shards: FakeShard[], w: ObjectsWalk): Promise<number> {
  const ref = rollup(all, w.prefix, w.delimiter).filter((r) => w.start === undefined || cmp(r.name, w.start) > 0);
  let pos = 0;
  let resume: string | undefined;
  const cache = w.cached ? new ListingCache<ListingState>(100_000, 60_000) : undefined;
  for (let pageNo = 0; ; pageNo++) {
    check(pageNo <= ref.length + 1, 'the walk does not end');
    const q: Query = {};
    if (w.prefix || w.sendEmptyPrefix) q.prefix = w.prefix;
    if (w.delimiter) q.delimiter = w.delimiter;
    q['max-keys'] = String(w.maxKeys);
    if (w.url) q['encoding-type'] = 'url';
    if (w.kind === 'v1') {
      if (resume ?? w.start) q.marker = (resume ?? w.start)!;
    } else {
      if (w.start !== undefined) q['start-after'] = w.start;
      if (resume !== undefined) q['continuation-token'] = resume;
      if (w.fetchOwner) q['fetch-owner'] = 'true';
    }
    const doc = await listOnce(w.kind, q, shards, undefined, cache);
    const at = `page ${pageNo} (${JSON.stringify(q)})`;
    check(doc.root === 'ListBucketResult' && doc.xmlns === 'http://s3.amazonaws.com/doc/2006-03-01/', `${at}: root`);
    const { rows, items } = rowsOf(doc, w.url);
    const want = ref.slice(pos, pos + w.maxKeys);
    sameRows(rows, want, at);
    const truncated = doc.top.get('IsTruncated');
    const moreLeft = w.maxKeys > 0 && pos + w.maxKeys < ref.length;
    check(truncated === String(moreLeft), `${at}: IsTruncated ${truncated}, want ${moreLeft}`);
    check(doc.top.get('Name') === BUCKET, `${at}: Name`);
    check(decodeName(doc.top.get('Prefix') ?? '?', w.url) === w.prefix, `${at}: Prefix echo`);
    check(doc.top.get('MaxKeys') === String(Math.min(w.maxKeys, 1000)), `${at}: MaxKeys echo`);
    check(w.delimiter ? decodeName(doc.top.get('Delimiter') ?? '?', w.url) === w.delimiter : !doc.top.has('Delimiter'),
      `${at}: Delimiter echo`);
    check(doc.top.get('EncodingType') === (w.url ? 'url' : undefined), `${at}: EncodingType echo`);
    for (const item of items.filter((i) => i.element === 'Contents')) {
      const key = rowName(item, w.url);
      check(item.fields.get('ETag') === `"${etagOf(key)}"` && item.fields.get('Size') === String(Buffer.byteLength(key)) &&
        item.fields.get('LastModified') === '2024-01-02T03:04:05.000Z' && item.fields.get('StorageClass') === 'STANDARD' &&
        item.fields.get('ChecksumAlgorithm') === 'CRC32', `${at}: fields of ${JSON.stringify(key)}`);
      const owner = w.kind === 'v1' || w.fetchOwner;
      check(item.hasOwner === owner, `${at}: Owner ${item.hasOwner}, want ${owner}`);
      if (owner) check(item.fields.get('Owner.DisplayName') === 'o&wner', `${at}: Owner fields`);
    }
    const last = want[want.length - 1];
    if (w.kind === 'v1') {
      check(decodeName(doc.top.get('Marker') ?? '?', w.url) === (q.marker ?? ''), `${at}: Marker echo`);
      const next = doc.top.get('NextMarker');
      check(moreLeft ? next !== undefined && decodeName(next, w.url) === last.name : next === undefined,
        `${at}: NextMarker ${next}`);
      resume = next === undefined ? undefined : decodeName(next, w.url);
    } else {
      check(doc.top.get('KeyCount') === String(want.length), `${at}: KeyCount`);
      check(doc.top.get('ContinuationToken') === q['continuation-token'], `${at}: ContinuationToken echo`);
      check((doc.top.has('StartAfter') ? decodeName(doc.top.get('StartAfter')!, w.url) : undefined) === q['start-after'],
        `${at}: StartAfter echo`);
      const next = doc.top.get('NextContinuationToken');
      check(moreLeft === (next !== undefined), `${at}: NextContinuationToken ${next}`);
      resume = next;
    }
    if (!moreLeft) return pageNo + 1;
    pos += w.maxKeys;
  }
}

function randomPrefix(rng: Rng, keys: string[]): string {
  if (keys.length === 0 || rng.bool(0.5)) return rng.bool(0.8) ? '' : rng.pick(PIECES);
  const chars = Array.from(rng.pick(keys));
  return chars.slice(0, rng.int(chars.length + 1)).join('');
}

function randomStart(rng: Rng, keys: string[], rows: Row[]): string | undefined {
  switch (rng.int(5)) {
    case 0:
    case 1:
      return undefined;
    case 2:
      return keys.length ? rng.pick(keys) : undefined;
    case 3:
      return rows.length ? rng.pick(rows).name : undefined; // often a common prefix
    default:
      return randomKeys(rng, 1, false)[0];
  }
}

async function objectsProperty(seed: number, size: 'small' | 'large'): Promise<number> {
  const rng = new Rng(seed);
  const url = rng.bool();
  const keys = randomKeys(rng, size === 'small' ? rng.int(14) : 120 + rng.int(80), url);
  const all = sortEntries(keys.map((key) => ({ key, element: 'Contents' })));
  const shards = randomShards(rng, 'objects', all, 1 + rng.int(8));
  const prefix = randomPrefix(rng, keys);
  const delimiter = rng.pick(['', '/', '/', 'a/', '--', 'b']);
  const start = randomStart(rng, keys, rollup(all, prefix, delimiter));
  const total = rollup(all, prefix, delimiter).length;
  const maxKeysList = size === 'small'
    ? Array.from({ length: total + 3 }, (_, i) => i)
    : [0, 1, 2, 7, 50, 1000, 5000];
  let pages = 0;
  for (const kind of ['v1', 'v2'] as const) {
    for (const maxKeys of maxKeysList) {
      const walk: ObjectsWalk = {
        kind, prefix, delimiter, url, start, maxKeys, fetchOwner: rng.bool(), sendEmptyPrefix: rng.bool(),
        cached: (seed + maxKeys) % 2 === 0,
      };
      try {
        pages += await walkObjects(all, shards, walk);
      } catch (err) {
        throw new Error(`seed ${seed} (${size}), ${JSON.stringify({ ...walk, keys })}: ${(err as Error).message}`);
      }
    }
  }
  return pages;
}

t.test('property: merged V1/V2 pages equal one bucket, small sets, every max-keys', async (t) => {
  let pages = 0;
  for (let seed = 1; seed <= 200; seed++) pages += await objectsProperty(seed, 'small');
  t.ok(pages > 2000, `walked ${pages} pages over 200 seeds`);
});

t.test('property: merged V1/V2 pages equal one bucket, larger sets, sampled max-keys', async (t) => {
  let pages = 0;
  for (let seed = 1001; seed <= 1003; seed++) pages += await objectsProperty(seed, 'large');
  t.ok(pages > 300, `walked ${pages} pages over 3 seeds`);
});

// ---------------------------------------------------------------------------
// Versions and multipart uploads.

async function walkMulti(kind: 'versions' | 'uploads', all: ModelEntry[], shards: FakeShard[],
  prefix: string, delimiter: string, url: boolean, maxKeys: number, start: string | undefined, cached: boolean): Promise<number> {
  const ref = rollup(all, prefix, delimiter).filter((r) => start === undefined || cmp(r.name, start) > 0);
  const idField = kind === 'versions' ? 'VersionId' : 'UploadId';
  let pos = 0;
  let keyMarker = start;
  let idMarker: string | undefined;
  const cache = cached ? new ListingCache<ListingState>(100_000, 60_000) : undefined;
  for (let pageNo = 0; ; pageNo++) {
    check(pageNo <= ref.length + 1, 'the walk does not end');
    const q: Query = { [kind]: '', [kind === 'uploads' ? 'max-uploads' : 'max-keys']: String(maxKeys) };
    if (prefix) q.prefix = prefix;
    if (delimiter) q.delimiter = delimiter;
    if (url) q['encoding-type'] = 'url';
    if (keyMarker !== undefined) q['key-marker'] = keyMarker;
    if (idMarker !== undefined) q[kind === 'versions' ? 'version-id-marker' : 'upload-id-marker'] = idMarker;
    const doc = await listOnce(kind, q, shards, undefined, cache);
    const at = `page ${pageNo} (${JSON.stringify(q)})`;
    check(doc.root === (kind === 'versions' ? 'ListVersionsResult' : 'ListMultipartUploadsResult'), `${at}: root`);
    const { rows, items } = rowsOf(doc, url);
    const want = ref.slice(pos, pos + maxKeys);
    sameRows(rows, want, at);
    items.forEach((item, i) => {
      const e = want[i].entry;
      check(e ? item.element === e.element && item.fields.get(idField) === e.id : item.element === 'CommonPrefixes',
        `${at}: ${item.element} ${item.fields.get(idField)} for ${JSON.stringify(want[i])}`);
    });
    const moreLeft = maxKeys > 0 && pos + maxKeys < ref.length;
    check(doc.top.get('IsTruncated') === String(moreLeft), `${at}: IsTruncated`);
    check(decodeName(doc.top.get('KeyMarker') ?? '?', url) === (keyMarker ?? ''), `${at}: KeyMarker echo`);
    const nextKey = doc.top.get('NextKeyMarker');
    const nextId = doc.top.get(`Next${kind === 'versions' ? 'VersionIdMarker' : 'UploadIdMarker'}`);
    if (!moreLeft) {
      check(nextKey === undefined && nextId === undefined, `${at}: next markers on the last page`);
      return pageNo + 1;
    }
    const last = want[want.length - 1];
    check(nextKey !== undefined && decodeName(nextKey, url) === last.name && nextId === last.entry?.id,
      `${at}: next markers ${nextKey} ${nextId}`);
    keyMarker = last.name;
    idMarker = nextId;
    pos += maxKeys;
  }
}

t.test('property: merged versions and uploads listings equal one bucket', async (t) => {
  let pages = 0;
  for (let seed = 2001; seed <= 2060; seed++) {
    const rng = new Rng(seed);
    const kind = rng.bool() ? 'versions' : 'uploads';
    const url = rng.bool();
    const keys = randomKeys(rng, rng.int(10), url);
    let n = 0;
    const all = sortEntries(keys.flatMap((key) => Array.from({ length: 1 + rng.int(3) }, (): ModelEntry => {
      n += 1;
      const element = kind === 'uploads' ? 'Upload' : rng.bool(0.25) ? 'DeleteMarker' : 'Version';
      return { key, element, id: kind === 'uploads' ? `upload-${n}` : rng.bool(0.3) ? 'null' : `v${n}` };
    })).filter((e, i, list) => list.findIndex((o) => o.key === e.key && o.id === e.id) === i));
    const shards = randomShards(rng, kind, all, 1 + rng.int(6));
    const prefix = randomPrefix(rng, keys);
    const delimiter = rng.pick(['', '/', 'a/']);
    const start = rng.bool(0.3) ? randomStart(rng, keys, rollup(all, prefix, delimiter)) : undefined;
    const total = rollup(all, prefix, delimiter).length;
    for (let maxKeys = 0; maxKeys <= total + 1; maxKeys++) {
      const cached = (seed + maxKeys) % 2 === 0;
      try {
        pages += await walkMulti(kind, all, shards, prefix, delimiter, url, maxKeys, start, cached);
      } catch (err) {
        throw new Error(`seed ${seed}, ${JSON.stringify({ kind, prefix, delimiter, url, maxKeys, start, cached, all })}: ${(err as Error).message}`);
      }
    }
  }
  t.ok(pages > 500, `walked ${pages} pages over 60 seeds`);
});

// ---------------------------------------------------------------------------
// Focused cases.

function shardsWith(rng: Rng, lists: string[][], setup?: (s: FakeShard, i: number) => void): FakeShard[] {
  return lists.map((keys, i) => {
    const s = new FakeShard('objects', rng);
    s.entries = sortEntries(keys.map((key) => ({ key, element: 'Contents' })));
    setup?.(s, i);
    return s;
  });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

t.test('keys are ordered by UTF-8 bytes, not UTF-16 code units', async (t) => {
  const shards = shardsWith(new Rng(1), [['\uFF5A', 'a'], ['😀', 'b']]);
  const doc = await listOnce('v2', { 'list-type': '2' }, shards);
  t.same(doc.items.map((i) => i.fields.get('Key')), ['a', 'b', '\uFF5A', '😀']);
});

t.test('encoding-type=url: every byte but unreserved and / is %XX; without it, XML escaping', async (t) => {
  const key = 'a+b c%d&<é/\r';
  const shards = shardsWith(new Rng(2), [[key]], (s) => { s.spaceAsPlus = true; });
  const encoded = await listOnce('v1', { 'encoding-type': 'url', prefix: 'a+b ' }, shards);
  t.equal(encoded.items[0].fields.get('Key'), 'a%2Bb%20c%25d%26%3C%C3%A9/%0D');
  t.equal(encoded.top.get('Prefix'), 'a%2Bb%20');
  t.equal(encoded.top.get('EncodingType'), 'url');
  const pieces: string[] = [];
  for await (const p of mergeListing(parseListRequest('v1', BUCKET, new URLSearchParams()), shards.map((s) => s.fetch),
    new AbortController().signal)) pieces.push(p);
  const xml = pieces.join('');
  t.match(xml, '<Key>a+b c%d&#38;&#60;é/&#13;</Key>');
  t.notOk(parseDoc(xml).top.has('EncodingType'));
});

t.test('a V1 marker that is a common prefix is not repeated by a shard answering it again', async (t) => {
  const shards = shardsWith(new Rng(3), [['a/1', 'a/2', 'b'], ['a/3', 'c']], (s) => { s.repeatsPrefix = true; });
  const doc = await listOnce('v1', { delimiter: '/', marker: 'a/' }, shards);
  t.same(doc.items.map((i) => i.fields.get('Key') ?? `[${i.fields.get('Prefix')}]`), ['b', 'c']);
  t.same(shards.map((s) => s.requests[0].query['start-after']), ['a/', 'a/']);
});

t.test('V2 resumes from the greater of start-after and the continuation token', async (t) => {
  const shards = shardsWith(new Rng(4), [['a', 'c', 'e'], ['b', 'd', 'f']]);
  const first = await listOnce('v2', { 'list-type': '2', 'max-keys': '2' }, shards);
  const token = first.top.get('NextContinuationToken')!;
  t.equal(decodeListToken(token), 'b');
  const behind = await listOnce('v2', { 'list-type': '2', 'continuation-token': token, 'start-after': 'a' }, shards);
  t.same(behind.items.map((i) => i.fields.get('Key')), ['c', 'd', 'e', 'f']);
  const ahead = await listOnce('v2', { 'list-type': '2', 'continuation-token': token, 'start-after': 'd' }, shards);
  t.same(ahead.items.map((i) => i.fields.get('Key')), ['e', 'f']);
  t.equal(ahead.top.get('StartAfter'), 'd');
  t.equal(ahead.top.get('ContinuationToken'), token);
});

t.test('a key found on two shards (mid-move) is listed once', async (t) => {
  const shards = shardsWith(new Rng(5), [['a', 'm'], ['m', 'z']]);
  const doc = await listOnce('v2', { 'list-type': '2' }, shards);
  t.same(doc.items.map((i) => i.fields.get('Key')), ['a', 'm', 'z']);
});

t.test('max-keys=0 and a start after everything under the prefix answer without asking any shard', async (t) => {
  const shards = shardsWith(new Rng(6), [['a', 'b'], ['c']]);
  const zero = await listOnce('v2', { 'list-type': '2', 'max-keys': '0' }, shards);
  t.equal(zero.top.get('IsTruncated'), 'false');
  t.equal(zero.top.get('KeyCount'), '0');
  t.notOk(zero.top.has('NextContinuationToken'));
  const beyond = await listOnce('v1', { prefix: 'a', marker: 'b' }, shards);
  t.equal(beyond.items.length, 0);
  t.same(shards.map((s) => s.requests.length), [0, 0]);
  // A marker before the prefix is not sent (MinIO answers such a marker with nothing).
  await listOnce('v1', { prefix: 'b', marker: 'a' }, shards);
  t.same(shards.map((s) => s.requests[0].query.marker ?? s.requests[0].query['start-after']), [undefined, undefined]);
});

t.test('shards are asked for a next page only when their part of the listing is used up', async (t) => {
  const many = (p: string): string[] => Array.from({ length: 10 }, (_, i) => `${p}${i}`);
  const shards = shardsWith(new Rng(7), [many('a'), many('b'), many('z')], (s) => { s.pageLimit = 3; });
  const doc = await listOnce('v2', { 'list-type': '2', 'max-keys': '5' }, shards);
  t.same(doc.items.map((i) => i.fields.get('Key')), ['a0', 'a1', 'a2', 'a3', 'a4']);
  // a0-a2, then a3-a5 (a5 tells the page is truncated); b and z: their first page only.
  t.same(shards.map((s) => s.requests.length), [2, 1, 1]);
  t.same(shards.map((s) => s.served), [[3, 3], [3], [3]]);
  t.same(shards[0].requests.map((r) => r.query['continuation-token'] !== undefined), [false, true]);

  for (const s of shards) s.requests.length = 0;
  const token = doc.top.get('NextContinuationToken')!;
  const next = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': token }, shards);
  t.same(next.items.map((i) => i.fields.get('Key')), ['a5', 'a6', 'a7', 'a8', 'a9']);
  t.same(shards.map((s) => s.requests[0].query['start-after']), ['a4', 'a4', 'a4']);
  t.same(shards.map((s) => s.requests.length), [2, 1, 1]);
});

t.test('with a listing cache the next page goes on where each shard stopped', async (t) => {
  const many = (p: string): string[] => Array.from({ length: 10 }, (_, i) => `${p}${i}`);
  const shards = shardsWith(new Rng(7), [many('a'), many('b'), many('z')], (s) => { s.pageLimit = 3; });
  const cache = new ListingCache<ListingState>(1000, 60_000);
  const doc = await listOnce('v2', { 'list-type': '2', 'max-keys': '5' }, shards, undefined, cache);
  t.same(doc.items.map((i) => i.fields.get('Key')), ['a0', 'a1', 'a2', 'a3', 'a4']);
  t.equal(cache.size, 1);
  t.same(shards.map((s) => s.requests.length), [2, 1, 1], 'no shard reads ahead after a first page');

  for (const s of shards) s.requests.length = 0;
  const token = doc.top.get('NextContinuationToken')!;
  const next = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': token }, shards, undefined, cache);
  t.same(next.items.map((i) => i.fields.get('Key')), ['a5', 'a6', 'a7', 'a8', 'a9']);
  // a5 was fetched with the first page; a6-a8 and a9 follow shard a's own
  // token. b and z still hold what they sent and are not asked for this
  // page; holding less than their share (20) of the next one, they read
  // ahead with their own tokens once it is answered.
  t.same(shards.map((s) => s.requests.length), [2, 1, 1]);
  t.ok(shards.every((s) => s.requests.every((r) => r.query['continuation-token'] !== undefined && r.query['start-after'] === undefined)));

  for (const s of shards) s.requests.length = 0;
  const third = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': next.top.get('NextContinuationToken')! },
    shards, undefined, cache);
  t.same(third.items.map((i) => i.fields.get('Key')), ['b0', 'b1', 'b2', 'b3', 'b4']);
  t.same(shards.map((s) => s.requests.length), [0, 1, 0], 'b3-b5 came read ahead; b6-b8 are read ahead now');

  // The state is taken once: the same page asked again starts over, with the same answer.
  for (const s of shards) s.requests.length = 0;
  const again = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': token }, shards, undefined, cache);
  t.same(again.items.map((i) => i.fields.get('Key')), ['a5', 'a6', 'a7', 'a8', 'a9']);
  t.same(shards.map((s) => s.requests[0].query['start-after']), ['a4', 'a4', 'a4']);
  // Another prefix is another listing, even from the same position.
  const other = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', prefix: 'a', 'start-after': 'a9' }, shards, undefined, cache);
  t.same(other.items.map((i) => i.fields.get('Key')), []);
});

t.test('a read-ahead that failed is asked again; one still on its way is dropped with the request', async (t) => {
  const many = (p: string): string[] => Array.from({ length: 10 }, (_, i) => `${p}${i}`);
  // Pages of 5: a0-a4, a5-a9, then b0-b4. Shard b's request 0 answers the
  // first page, request 1 reads ahead after the second.
  const pages = async (shards: FakeShard[], cache: ListingCache<ListingState>): Promise<Doc> => {
    let doc = await listOnce('v2', { 'list-type': '2', 'max-keys': '5' }, shards, undefined, cache);
    for (let i = 0; i < 2; i++) {
      doc = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': doc.top.get('NextContinuationToken')! },
        shards, undefined, cache);
    }
    return doc;
  };
  const lost = shardsWith(new Rng(12), [many('a'), many('b')], (s, i) => {
    s.pageLimit = 3;
    if (i === 1) s.fail = (n) => (n === 1 ? new S3Error('ServiceUnavailable', 'read-ahead lost') : undefined);
  });
  const third = await pages(lost, new ListingCache<ListingState>(1000, 60_000));
  t.same(third.items.map((i) => i.fields.get('Key')), ['b0', 'b1', 'b2', 'b3', 'b4']);
  const b = lost[1].requests;
  t.ok(b[1].query['continuation-token'] !== undefined && b[2].query['continuation-token'] === b[1].query['continuation-token'],
    'the lost page is asked for again');

  const stuck = shardsWith(new Rng(13), [many('a'), many('b')], (s, i) => {
    s.pageLimit = 3;
    if (i === 1) s.hang = (n) => n === 1;
  });
  const stuckCache = new ListingCache<ListingState>(1000, 60_000);
  const one = await listOnce('v2', { 'list-type': '2', 'max-keys': '5' }, stuck, undefined, stuckCache);
  const two = await listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': one.top.get('NextContinuationToken')! },
    stuck, undefined, stuckCache);
  t.equal(stuck[1].requests.length, 2, 'shard b reads ahead after the second page');
  // The third page needs no other request before it waits for the read-ahead.
  const ac = new AbortController();
  const p = rejection(listOnce('v2', { 'list-type': '2', 'max-keys': '5', 'continuation-token': two.top.get('NextContinuationToken')! },
    stuck, ac.signal, stuckCache));
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(stuck[1].requests[1].signal.aborted, 'the read-ahead is awaited');
  ac.abort();
  await p;
  t.ok(stuck[1].requests[1].signal.aborted, 'and aborted when the client goes away');
});

t.test('a shard no longer needed gets its request aborted', async (t) => {
  // Both shards end their first page on the common prefix x/; the page is full
  // after it, and whichever shard shows an entry after x/ first settles IsTruncated.
  const shards = shardsWith(new Rng(8), [['a', 'x/1', 'z1'], ['x/2', 'z2']], (s, i) => {
    s.pageLimit = 2 - i;
    if (i === 1) s.hang = (n) => n === 1;
  });
  const cache = new ListingCache<ListingState>(1000, 60_000);
  const doc = await listOnce('v1', { delimiter: '/', 'max-keys': '2' }, shards, undefined, cache);
  t.same(doc.items.map((i) => i.fields.get('Key') ?? `[${i.fields.get('Prefix')}]`), ['a', '[x/]']);
  t.equal(doc.top.get('IsTruncated'), 'true');
  t.equal(doc.top.get('NextMarker'), 'x/');
  t.equal(shards[1].requests.length, 2);
  t.ok(shards[1].requests[1].signal.aborted, 'the hanging request was aborted');
  t.notOk(shards[0].requests.some((r) => r.signal.aborted), 'finished requests are left alone');
  // The next page goes on with shard 0 as it was left; shard 1, whose
  // request was cut off, starts over after the marker.
  const next = await listOnce('v1', { delimiter: '/', 'max-keys': '2', marker: 'x/' }, shards, undefined, cache);
  t.same(next.items.map((i) => i.fields.get('Key') ?? `[${i.fields.get('Prefix')}]`), ['z1', 'z2']);
  t.equal(next.top.get('IsTruncated'), 'false');
  t.same(shards[1].requests[2].query['start-after'], 'x/');
  t.notOk(shards[0].requests.slice(2).some((r) => r.query['start-after'] === 'x/'), 'shard 0 is not asked to start over');
});

t.test('a failing shard fails the whole listing, first page or later, and releases the others', async (t) => {
  for (const failAt of [0, 1]) {
    const boom = new S3Error('ServiceUnavailable', `shard down at request ${failAt}`);
    const shards = shardsWith(new Rng(9), [['a', 'b', 'c', 'd'], ['e', 'f']], (s, i) => {
      s.pageLimit = 1;
      if (i === 0) s.fail = (n) => (n === failAt ? boom : undefined);
      else s.hang = (n) => n === 1;
    });
    const err = await rejection(listOnce('v2', { 'list-type': '2', 'max-keys': '3' }, shards));
    t.equal(err, boom, `failure at request ${failAt}`);
  }
  // The one case with an open request elsewhere: shard 1 hangs on its first page.
  const boom = new S3Error('ServiceUnavailable');
  const shards = shardsWith(new Rng(10), [['a'], ['b']], (s, i) => {
    if (i === 0) s.fail = () => boom;
    else s.hang = () => true;
  });
  t.equal(await rejection(listOnce('v1', {}, shards)), boom);
  t.ok(shards[1].requests[0].signal.aborted);
});

t.test('the client going away aborts the shard requests', async (t) => {
  const shards = shardsWith(new Rng(11), [['a'], ['b']], (s) => { s.hang = () => true; });
  const ac = new AbortController();
  const p = rejection(listOnce('v1', {}, shards, ac.signal));
  await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  await p;
  t.ok(shards.every((s) => s.requests[0].signal.aborted));
});

function fixedShard(body: string | (() => Readable)): ShardPageFetcher {
  return async () => (typeof body === 'string' ? Readable.from([Buffer.from(body)]) : body());
}

t.test('a backend answer that is not a listing is BadGateway; a broken body is ServiceUnavailable', async (t) => {
  const ok = '<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>';
  const cases: Record<string, string> = {
    'truncated document': `${ok}<Contents><Key>a</Key>`,
    'not XML': 'hello',
    'another document': '<Error><Code>NoSuchBucket</Code></Error>',
    'bad percent-encoding': `${ok}<Contents><Key>a%zz</Key></Contents></ListBucketResult>`,
    'percent-encoding that is not UTF-8': `${ok}<Contents><Key>a%FF</Key></Contents></ListBucketResult>`,
    'no EncodingType': '<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>',
    'no IsTruncated': '<ListBucketResult><EncodingType>url</EncodingType></ListBucketResult>',
    'truncated without a token': '<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated></ListBucketResult>',
    'an entry without its key': `${ok}<Contents><Size>1</Size></Contents></ListBucketResult>`,
    // S3 keys are at most 1024 bytes; our continuation token carries the last one.
    'a key longer than S3 allows': `${ok}<Contents><Key>${'%C3%A9'.repeat(513)}</Key></Contents></ListBucketResult>`,
  };
  const req = parseListRequest('v2', BUCKET, new URLSearchParams({ 'list-type': '2' }));
  for (const [what, body] of Object.entries(cases)) {
    const err = await rejection((async () => {
      for await (const _ of mergeListing(req, [fixedShard(body)], new AbortController().signal)) { /* drain */ }
    })());
    t.match(err, { code: 'BadGateway' }, what);
  }
  const broken = fixedShard(() => new Readable({
    read() {
      this.push('<ListBucketResult>');
      this.destroy(new Error('socket hang up'));
    },
  }));
  const err = await rejection((async () => {
    for await (const _ of mergeListing(req, [broken], new AbortController().signal)) { /* drain */ }
  })());
  t.match(err, { code: 'ServiceUnavailable' });
});

t.test('a shard that hands back the same token on empty pages is BadGateway, not an endless loop', async (t) => {
  let calls = 0;
  const stuck: ShardPageFetcher = async () => {
    calls++;
    return Readable.from([Buffer.from('<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>' +
      '<NextContinuationToken>same</NextContinuationToken></ListBucketResult>')]);
  };
  const req = parseListRequest('v2', BUCKET, new URLSearchParams({ 'list-type': '2' }));
  const err = await rejection((async () => {
    for await (const _ of mergeListing(req, [stuck], new AbortController().signal)) { /* drain */ }
  })());
  t.match(err, { code: 'BadGateway' });
  t.equal(calls, 2, 'gave up on the first repeat');
});

t.test('a page ending on a common prefix resumes after everything under it', async (t) => {
  const queries: Record<string, string>[] = [];
  const pages = [
    '<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken>' +
      '<Contents><Key>a</Key></Contents><CommonPrefixes><Prefix>b/</Prefix></CommonPrefixes></ListBucketResult>',
    '<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>c</Key></Contents></ListBucketResult>',
  ];
  const shard: ShardPageFetcher = async (q) => {
    queries.push(q);
    return Readable.from([Buffer.from(pages[queries.length - 1])]);
  };
  const req = parseListRequest('v2', BUCKET, new URLSearchParams({ 'list-type': '2', delimiter: '/' }));
  let xml = '';
  for await (const piece of mergeListing(req, [shard], new AbortController().signal)) xml += piece;
  t.equal(queries.length, 2);
  t.equal(queries[1]['start-after'], 'b/\u{10FFFF}', 'start-after skips the prefix');
  t.notOk('continuation-token' in queries[1], 'rather than the backend token that walks it');
  t.match(xml, /<Key>a<\/Key>.*<Key>c<\/Key>/s);
});

t.test('a version-id marker goes only to the shards that may hold its key', async (t) => {
  const queries: Record<string, string>[][] = [[], [], []];
  const empty = '<ListVersionsResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated></ListVersionsResult>';
  const shards: ShardPageFetcher[] = queries.map((q) => async (query) => {
    q.push(query);
    return Readable.from([Buffer.from(empty)]);
  });
  const req = parseListRequest('versions', BUCKET, new URLSearchParams({ versions: '', 'key-marker': 'k/1', 'version-id-marker': 'v7' }));
  for await (const _ of mergeListing(req, shards, new AbortController().signal, { rank: (_key, shard) => (shard === 1 ? 0 : 3) })) { /* drain */ }
  t.same(queries.map((q) => q[0]['version-id-marker']), [undefined, 'v7', undefined]);
  t.same(queries.map((q) => q[0]['key-marker']), ['k/1', 'k/1', 'k/1']);
});

t.test('continuation tokens: round trip, and anything else is InvalidArgument', async (t) => {
  const rng = new Rng(12);
  for (let i = 0; i < 200; i++) {
    const s = randomKeys(rng, 1, true)[0];
    t.equal(decodeListToken(encodeListToken(s)), s);
  }
  const valid = encodeListToken('tenant/block/');
  const raw = Buffer.from(valid, 'base64url');
  const otherVersion = Buffer.from(raw);
  otherVersion[0] = 3;
  const flipped = Buffer.from(raw);
  flipped[3] ^= 1;
  const bad = {
    garbage: 'not a token!',
    'padded base64': `${valid}==`,
    'wrong version': otherVersion.toString('base64url'),
    'flipped bit': flipped.toString('base64url'),
    'too short': 'AQ',
    'MinIO token': Buffer.from('tenant/block/').toString('base64'),
    'random bytes': Buffer.from(Array.from({ length: 20 }, () => rng.int(256))).toString('base64url'),
  };
  for (const [what, token] of Object.entries(bad)) {
    t.throws(() => parseListRequest('v2', BUCKET, new URLSearchParams({ 'list-type': '2', 'continuation-token': token })),
      { code: 'InvalidArgument' }, what);
  }
  t.equal(parseListRequest('v2', BUCKET, new URLSearchParams({ 'continuation-token': valid })).tokenAfter, 'tenant/block/');
});

t.test('a token names the worker that holds its listing, if the listing was given one', async (t) => {
  const parse = (token: string) => parseListRequest('v2', BUCKET, new URLSearchParams({ 'continuation-token': token }));
  t.match(parse(encodeListToken('tenant/block/', 7)), { tokenAfter: 'tenant/block/', tokenOwner: 7 });
  t.match(parse(encodeListToken('', 0xffffffff)), { tokenAfter: '', tokenOwner: 0xffffffff });
  t.match(parse(encodeListToken('tenant/block/')), { tokenAfter: 'tenant/block/', tokenOwner: undefined });
  // Version 2 with its CRC but too short to hold a worker id.
  const short = Buffer.from([2, 0, 0]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc32(short));
  t.throws(() => parse(Buffer.concat([short, sum]).toString('base64url')), { code: 'InvalidArgument' });

  const shards = shardsWith(new Rng(5), [['a', 'c'], ['b', 'd']]);
  const pageToken = async (owner?: number) => {
    const req = parseListRequest('v2', BUCKET, new URLSearchParams({ 'list-type': '2', 'max-keys': '2' }));
    const pieces: string[] = [];
    for await (const p of mergeListing(req, shards.map((s) => s.fetch), new AbortController().signal, { owner })) pieces.push(p);
    return parse(parseDoc(pieces.join('')).top.get('NextContinuationToken')!);
  };
  t.match(await pageToken(3), { tokenAfter: 'b', tokenOwner: 3 });
  t.match(await pageToken(), { tokenAfter: 'b', tokenOwner: undefined });
});

t.test('parseListRequest validates and clamps', async (t) => {
  const parse = (kind: ListKind, q: Query) => parseListRequest(kind, BUCKET, new URLSearchParams(q));
  for (const v of ['abc', '-1', '1.5', '', ' 1', '99999999999']) {
    t.throws(() => parse('v1', { 'max-keys': v }), { code: 'InvalidArgument' }, `max-keys=${v}`);
  }
  t.equal(parse('v1', {}).maxKeys, 1000);
  t.equal(parse('v1', { 'max-keys': '5000' }).maxKeys, 1000);
  t.equal(parse('v2', { 'max-keys': '0' }).maxKeys, 0);
  t.equal(parse('uploads', { 'max-uploads': '7', 'max-keys': '3' }).maxKeys, 7);
  t.throws(() => parse('v2', { 'encoding-type': 'base64' }), { code: 'InvalidArgument' });
  t.throws(() => parse('versions', { 'version-id-marker': 'v1' }), { code: 'InvalidArgument' });
  const v2 = parse('v2', { prefix: 'p/', delimiter: '/', 'start-after': 's', 'fetch-owner': 'true', 'encoding-type': 'url', marker: 'm' });
  t.match(v2, { kind: 'v2', prefix: 'p/', delimiter: '/', startAfter: 's', fetchOwner: true, encodingUrl: true, marker: '' });
  t.match(parse('versions', { 'key-marker': 'k', 'version-id-marker': 'null' }), { keyMarker: 'k', versionIdMarker: 'null' });
});
