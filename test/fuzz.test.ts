import t from 'tap';
import type { Test } from 'tap';
import sax from 'sax';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { AwsChunkedDecoder, type AwsChunkedOptions } from '../lib/aws-chunked';
import { S3Error, isS3Error } from '../lib/errors';
import {
  decodeListToken, encodeListToken, mergeListing, parseListRequest, type ListKind, type ShardPageFetcher,
} from '../lib/list-merge';
import { parseDeleteRequest } from '../lib/delete-objects';
import {
  Rng, Tally, caseSeed, crc32Base64, encodeAwsChunked, fuzzIterations, fuzzSeed, mutateBytes, randomCuts,
  sha256Hex, signingKey, split, type ChunkedKind, type ChunkSigning,
} from './helpers/fuzz';

// Random and mutated inputs for the parsers the proxy runs on what clients
// and backends send: the aws-chunked decoder, the listing query and token,
// the listing merger fed backend pages, the DeleteObjects body. Each must end
// in a result that keeps its promises or in the S3Error it documents, never
// in anything else.

const SEED = fuzzSeed();
const CASES = fuzzIterations(1500);
t.comment(`fuzz seed ${SEED}, ${CASES} cases per parser; FUZZ_SEED=${SEED} replays this run`);

/** Reports a failing case with what reproduces it; at most a few per parser, then a count. */
class Failures {
  private count = 0;
  constructor(private readonly t: Test, private readonly what: string) {}

  add(i: number, message: string, input: unknown): void {
    this.count += 1;
    if (this.count > 5) return;
    const shown = Buffer.isBuffer(input) ? input.toString('latin1') : typeof input === 'string' ? input : JSON.stringify(input);
    this.t.fail(`${this.what} case ${i} (FUZZ_SEED=${SEED}): ${message}`, {
      input: shown.length > 2000 ? `${JSON.stringify(shown.slice(0, 2000))}... (${shown.length} chars)` : JSON.stringify(shown),
    });
  }

  done(tally: Tally): void {
    this.t.comment(`${this.what}: ${tally}`);
    this.t.equal(this.count, 0, `${this.what}: every case kept the contract`);
  }
}

const describe = (err: unknown): string =>
  isS3Error(err) ? `S3Error ${err.code}: ${err.message}` : `${(err as Error)?.stack ?? String(err)}`;

/** How an outcome is counted: the S3 code, or what else was thrown and where. */
function label(err: unknown): string {
  if (isS3Error(err)) return err.code;
  const e = err as Error;
  const where = /\((\/[^)]*\/lib\/[^)]+)\)/.exec(e?.stack ?? '')?.[1]?.replace(/^.*\/lib\//, 'lib/');
  return `NOT AN S3Error: ${e?.name ?? typeof err}: ${String(e?.message ?? err).slice(0, 60)}${where ? ` at ${where}` : ''}`;
}

// ---------------------------------------------------------------------------
// aws-chunked

const SIGNING: ChunkSigning = {
  signingKey: signingKey('fuzz-secret', '20240102', 'us-east-1'),
  amzDate: '20240102T030405Z',
  scope: '20240102/us-east-1/s3/aws4_request',
  seedSignature: sha256Hex('seed'),
};

const TRAILER_VALUE: Record<string, (b: Buffer) => string> = {
  'x-amz-checksum-crc32': crc32Base64,
  'x-amz-checksum-sha256': (b) => createHash('sha256').update(b).digest('base64'),
  'x-amz-checksum-sha1': (b) => createHash('sha1').update(b).digest('base64'),
};

interface ChunkedCase {
  payload: Buffer;
  input: Buffer;
  opts: AwsChunkedOptions;
  /** Input and options as a well-behaved client sends them: must decode to the payload. */
  pristine: boolean;
  cuts: number[];
}

function chunkedCase(rng: Rng): ChunkedCase {
  const payload = rng.bytes(rng.pick([0, 1, 7, 100, 8192, 8193, rng.size(3000), rng.size(40000)]));
  const kind = rng.pick<ChunkedKind>(['signed', 'signed-trailer', 'unsigned-trailer']);
  const signing = kind !== 'unsigned-trailer' && rng.bool(0.7) ? SIGNING : undefined;
  const checksum = rng.pick(Object.keys(TRAILER_VALUE));
  // One-byte chunks are as interesting as long ones, and far slower: only for short payloads.
  const chunkSize = payload.length <= 200 ? rng.pick([1, 3, 64, 8192]) : rng.pick([64, 1000, 8192, 65536, 1 + rng.int(20000)]);
  const input0 = encodeAwsChunked(payload, {
    kind, chunkSize, signing, trailers: kind === 'signed' ? undefined : [[checksum, TRAILER_VALUE[checksum](payload)]],
  });
  let pristine = true;
  const opts: AwsChunkedOptions = {
    kind, decodedLength: payload.length, trailer: kind === 'signed' ? undefined : checksum,
    verify: signing,
  };
  if (rng.bool(0.15)) {
    pristine = false;
    opts.decodedLength = rng.pick([undefined, payload.length + 1, Math.max(0, payload.length - 1), 0, rng.int(1e6)]);
  }
  if (rng.bool(0.1)) {
    pristine = false;
    opts.trailer = rng.pick(['', 'x-amz-checksum-crc32,x-amz-checksum-sha256', 'x-amz-checksum-md5', 'x-amz-meta-a',
      ' X-Amz-Checksum-CRC32 ', 'x-amz-checksum-crc32c', ',,,', 'x-amz-checksum-crc64nvme', 'x-amz-checksum-sha1,x-amz-meta-b']);
  }
  if (rng.bool(0.1)) {
    pristine = false;
    opts.maxChunkSize = rng.pick([1, 100, 8192]);
  }
  if (rng.bool(0.1) && kind !== 'unsigned-trailer') {
    pristine = false;
    opts.verify = signing ? undefined : { ...SIGNING, seedSignature: sha256Hex('another seed') };
  }
  let input = input0;
  if (rng.bool(0.8)) {
    input = rng.bool(0.8) ? mutateBytes(rng, input0) : structural(rng, input0);
    if (!input.equals(input0)) pristine = false;
  }
  return { payload, input, opts, pristine, cuts: randomCuts(rng, input.length, input.length <= 1000 ? rng.pick([1, 7, 100]) : rng.pick([100, 5000, 1 << 20])) };
}

function structural(rng: Rng, b: Buffer): Buffer {
  const text = b.toString('latin1');
  switch (rng.int(5)) {
    case 0: return Buffer.from(text.replace(/\r\n/g, '\n'), 'latin1');
    case 1: return b.subarray(0, b.length - 2);
    case 2: return Buffer.concat([b, rng.pick([Buffer.from('0\r\n\r\n'), Buffer.from('x'), rng.bytes(10)])]);
    case 3: return Buffer.from(text.replace(/^[0-9a-f]+/m, () => rng.pick(['', '0', 'FFFFFFFFF', '-1', '10000000', ' 1', '1 '])), 'latin1');
    default: return Buffer.from(text.replace(/chunk-signature=[0-9a-f]{64}/, () => rng.pick(['', 'chunk-signature=', 'chunk-signature=' + 'A'.repeat(64), 'x=y'])), 'latin1');
  }
}

interface Decoded {
  out: Buffer;
  error?: unknown;
  trailers?: Record<string, string>;
  problem?: string;
}

function runDecoder(c: ChunkedCase): Promise<Decoded> {
  return new Promise((resolve) => {
    let d: AwsChunkedDecoder;
    try {
      d = new AwsChunkedDecoder(c.opts);
    } catch (error) {
      // Options naming a checksum it cannot compute are refused up front.
      resolve({ out: Buffer.alloc(0), error });
      return;
    }
    const parts: Buffer[] = [];
    let emitted = 0;
    let settled = false;
    let problem: string | undefined;
    const settle = (r: Decoded): void => {
      if (settled) {
        problem ??= 'settled twice (end and error, or two errors)';
        return;
      }
      settled = true;
      clearTimeout(timer);
      // Late events would show up as problems: wait a turn before resolving.
      setImmediate(() => resolve({ ...r, problem: problem ?? r.problem }));
    };
    const timer = setTimeout(() => settle({ out: Buffer.concat(parts), problem: 'neither ended nor failed within 5 s' }), 5000);
    d.on('data', (b: Buffer) => {
      if (settled) problem ??= 'data after it settled';
      emitted += b.length;
      if (c.opts.decodedLength !== undefined && emitted > c.opts.decodedLength) {
        problem ??= `emitted ${emitted} bytes, more than the decoded length ${c.opts.decodedLength}`;
      }
      parts.push(b);
    });
    d.on('end', () => settle({ out: Buffer.concat(parts), trailers: { ...d.trailers } }));
    d.on('error', (error) => settle({ out: Buffer.concat(parts), error }));
    try {
      for (const piece of split(c.input, c.cuts)) {
        if (d.destroyed) break;
        d.write(piece);
      }
      if (!d.destroyed) d.end();
    } catch (err) {
      problem ??= `write() threw synchronously: ${describe(err)}`;
      settle({ out: Buffer.concat(parts) });
    }
  });
}

t.test('aws-chunked decoder: random and mutated framings', async (t) => {
  const failures = new Failures(t, 'aws-chunked');
  const tally = new Tally();
  for (let i = 0; i < CASES; i++) {
    const c = chunkedCase(new Rng(caseSeed(SEED, i)));
    const r = await runDecoder(c);
    const fail = (m: string): void => failures.add(i, m, { opts: { ...c.opts, verify: !!c.opts.verify }, body: c.input.toString('latin1') });
    if (r.problem) {
      fail(r.problem);
      continue;
    }
    if (r.error !== undefined) {
      tally.add(label(r.error));
      if (!isS3Error(r.error) || r.error.status < 400 || r.error.status >= 500) fail(`failed with ${describe(r.error)}`);
      else if (c.pristine) fail(`a well-formed body failed: ${describe(r.error)}`);
      // The last decoded piece is held back until everything verified, so a
      // failed upload always reaches the backend short.
      else if (c.opts.decodedLength !== undefined && c.opts.decodedLength > 0 && r.out.length >= c.opts.decodedLength) {
        fail(`failed after releasing all ${r.out.length} bytes`);
      }
      continue;
    }
    tally.add(c.pristine ? 'decoded' : 'decoded (mutated input)');
    if (c.opts.decodedLength !== undefined && r.out.length !== c.opts.decodedLength) {
      fail(`ended with ${r.out.length} bytes, not the decoded length ${c.opts.decodedLength}`);
    } else if ((c.pristine || c.opts.verify) && !r.out.equals(c.payload)) {
      fail('ended with bytes other than the payload its chunk signatures (or a well-formed framing) carry');
    } else {
      for (const [name, value] of Object.entries(r.trailers ?? {})) {
        const expected = TRAILER_VALUE[name]?.(r.out);
        const declared = (c.opts.trailer ?? '').split(',').map((s) => s.trim().toLowerCase());
        if (!declared.includes(name)) fail(`accepted the trailer ${name} that x-amz-trailer did not announce`);
        else if (expected !== undefined && value !== expected) fail(`accepted ${name}: ${value}, but the output's is ${expected}`);
      }
    }
  }
  t.ok(tally.has('decoded'), 'some well-formed bodies were in the mix');
  failures.done(tally);
});

// ---------------------------------------------------------------------------
// Listing queries and continuation tokens

const KEY_PIECES = ['a', 'b', '/', 'a/', 'x/y/', '+', ' ', '%', '%41', '&', '<', 'é', '€', '😀', '\uFF5A', '\uFEFF', '0', '\t',
  '\n', '\u0001', '\u007f', '~', '.', '..', '*', '?', '='];

function randomKey(rng: Rng, maxPieces = 6): string {
  let s = '';
  for (let n = rng.int(maxPieces + 1); n > 0; n--) s += rng.pick(KEY_PIECES);
  return s;
}

/** A token as our format defines it (version 1, the bytes, CRC32 of both), built without lib code. */
function rawToken(bytes: Buffer, version = 1): string {
  const body = Buffer.concat([Buffer.from([version]), bytes]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([body, sum]).toString('base64url');
}

interface TokenCase {
  token: string;
  /** The position it must decode to; undefined when it must be refused. */
  expected: string | undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function tokenCase(rng: Rng): TokenCase {
  const key = rng.bool(0.05) ? 'k'.repeat(rng.pick([1024, 1025, 1500])) : randomKey(rng, 10);
  // Positions are keys: at most 1024 bytes.
  const position = Buffer.byteLength(key) <= 1024 ? key : undefined;
  switch (rng.int(6)) {
    case 0: return { token: encodeListToken(key), expected: position };
    case 1: {
      const bytes = rng.bool() ? Buffer.from(key) : rng.bytes(rng.size(40));
      let expected: string | undefined;
      try {
        expected = bytes.length <= 1024 ? utf8.decode(bytes) : undefined;
      } catch { /* not UTF-8: refused */ }
      return { token: rawToken(bytes), expected };
    }
    case 2: {
      // Version 2 names a worker in 4 bytes before the position.
      const version = rng.pick([0, 2, 3, 255]);
      const bytes = version === 2 && rng.bool() ? Buffer.concat([rng.bytes(4), Buffer.from(key)]) : Buffer.from(key);
      let expected: string | undefined;
      try {
        if (version === 2 && bytes.length >= 4 && bytes.length - 4 <= 1024) expected = utf8.decode(bytes.subarray(4));
      } catch { /* not UTF-8: refused */ }
      return { token: rawToken(bytes, version), expected };
    }
    case 3: {
      const good = rawToken(Buffer.from(key));
      const token = mutateBytes(rng, Buffer.from(good), 2).toString('latin1');
      return { token, expected: token === good ? position : undefined };
    }
    case 4: {
      const good = rawToken(Buffer.from(key));
      const token = rng.pick([good + '=', good + '==', ' ' + good, good.replace(/-/g, '+').replace(/_/g, '/'), good + 'A', good.slice(1)]);
      return { token, expected: token === good ? position : undefined };
    }
    default: {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      let token = '';
      for (let n = rng.size(3000); n > 0; n--) token += alphabet[rng.int(alphabet.length)];
      return { token, expected: undefined };
    }
  }
}

t.test('continuation tokens: random, forged and mutated', async (t) => {
  const failures = new Failures(t, 'decodeListToken');
  const tally = new Tally();
  for (let i = 0; i < CASES * 2; i++) {
    const c = tokenCase(new Rng(caseSeed(SEED ^ 0x70c, i)));
    let got: string | undefined;
    try {
      got = decodeListToken(c.token);
    } catch (err) {
      tally.add(label(err));
      if (!isS3Error(err) || err.code !== 'InvalidArgument') failures.add(i, `threw ${describe(err)}`, c.token);
      else if (c.expected !== undefined) failures.add(i, `refused a good token for ${JSON.stringify(c.expected)}`, c.token);
      continue;
    }
    tally.add('decoded');
    if (got !== c.expected) failures.add(i, `decoded to ${JSON.stringify(got)}, expected ${c.expected === undefined ? 'a refusal' : JSON.stringify(c.expected)}`, c.token);
  }
  failures.done(tally);
});

const LIST_PARAMS = ['prefix', 'delimiter', 'max-keys', 'max-uploads', 'marker', 'encoding-type', 'list-type',
  'continuation-token', 'start-after', 'fetch-owner', 'key-marker', 'version-id-marker', 'upload-id-marker',
  'versions', 'uploads', 'Max-Keys', 'x-id', 'unknown'];
const NUMBERS = ['0', '1', '5', '999', '1000', '1001', '2147483647', '2147483648', '-1', '+5', ' 5', '5 ', '1e3', '0x10',
  '', 'abc', '00000000000000000000001', '99999999999999999999999', '1.5', '٣'];

function paramValue(rng: Rng, name: string, tokens: string[]): string {
  if (/max-/i.test(name) && rng.bool(0.8)) return rng.pick(NUMBERS);
  if (name === 'encoding-type' && rng.bool(0.8)) return rng.pick(['url', 'URL', '', 'base64', 'url ', 'url,url']);
  if (name === 'continuation-token' && rng.bool(0.8)) {
    const good = rng.pick(tokens);
    return rng.bool(0.6) ? good : mutateBytes(rng, Buffer.from(good), 2).toString('latin1');
  }
  if (name === 'fetch-owner' && rng.bool(0.7)) return rng.pick(['true', 'TRUE', 'false', '1', '']);
  return rng.bool(0.1) ? rng.bytes(rng.size(40)).toString('latin1') : randomKey(rng, 8);
}

/** S3's rules for these parameters, as its documentation states them. */
function expectedRefusal(kind: ListKind, q: URLSearchParams, goodTokens: Map<string, string>): string | undefined {
  const max = q.get(kind === 'uploads' ? 'max-uploads' : 'max-keys');
  if (max !== null && !(/^[0-9]+$/.test(max) && BigInt(max) <= 2147483647n)) return `max ${JSON.stringify(max)}`;
  const enc = q.get('encoding-type');
  if (enc !== null && enc !== '' && enc !== 'url') return `encoding-type ${JSON.stringify(enc)}`;
  const token = q.get('continuation-token');
  if (kind === 'v2' && token && !goodTokens.has(token)) return 'a token that is not ours';
  if (kind === 'versions' && q.get('version-id-marker') && !q.get('key-marker')) return 'version-id-marker without key-marker';
  return undefined;
}

t.test('listing queries: random parameters', async (t) => {
  const failures = new Failures(t, 'parseListRequest');
  const tally = new Tally();
  const setup = new Rng(caseSeed(SEED ^ 0x11, 0));
  const goodTokens = new Map<string, string>();
  for (let n = 0; n < 50; n++) {
    const key = randomKey(setup, 8);
    goodTokens.set(encodeListToken(key), key);
  }
  const tokens = [...goodTokens.keys()];
  for (let i = 0; i < CASES * 2; i++) {
    const rng = new Rng(caseSeed(SEED ^ 0x15, i));
    const kind = rng.pick<ListKind>(['v1', 'v2', 'versions', 'uploads']);
    let raw: string;
    if (rng.bool(0.85)) {
      const parts: string[] = [];
      for (let n = rng.int(7); n > 0; n--) {
        const name = rng.pick(LIST_PARAMS);
        const value = paramValue(rng, name, tokens);
        parts.push(rng.bool(0.9) ? `${encodeURIComponent(name)}=${encodeURIComponent(value)}` : `${name}=${value}`);
      }
      raw = parts.join('&');
      if (rng.bool(0.2)) raw = mutateBytes(rng, Buffer.from(raw, 'latin1')).toString('latin1');
    } else {
      raw = rng.bytes(rng.size(200)).toString('latin1');
    }
    const query = new URLSearchParams(raw);
    const refusal = expectedRefusal(kind, query, goodTokens);
    const input = { kind, query: raw };
    let req;
    try {
      req = parseListRequest(kind, 'vb', query);
    } catch (err) {
      tally.add(label(err));
      if (!isS3Error(err) || err.code !== 'InvalidArgument') failures.add(i, `threw ${describe(err)}`, input);
      else if (refusal === undefined) failures.add(i, `refused a valid query: ${describe(err)}`, input);
      continue;
    }
    tally.add('parsed');
    if (refusal !== undefined) {
      failures.add(i, `accepted ${refusal}`, input);
      continue;
    }
    const maxRaw = query.get(kind === 'uploads' ? 'max-uploads' : 'max-keys');
    const expectedMax = maxRaw === null ? 1000 : Math.min(Number(maxRaw), 1000);
    if (req.maxKeys !== expectedMax) failures.add(i, `max keys ${req.maxKeys}, expected ${expectedMax}`, input);
    if (req.prefix !== (query.get('prefix') ?? '')) failures.add(i, `prefix ${JSON.stringify(req.prefix)}`, input);
    const token = query.get('continuation-token');
    if (kind === 'v2' && token && req.tokenAfter !== goodTokens.get(token)) {
      failures.add(i, `the token resumes after ${JSON.stringify(req.tokenAfter)}, not ${JSON.stringify(goodTokens.get(token))}`, input);
    }
  }
  t.ok(tally.has('parsed') && tally.has('InvalidArgument'), 'both outcomes were in the mix');
  failures.done(tally);
});

// ---------------------------------------------------------------------------
// The listing merger fed broken backend pages

interface ModelEntry { key: string; id?: string; element: 'Contents' | 'Version' | 'DeleteMarker' | 'Upload' }
interface Row { name: string; cp: boolean; entry?: ModelEntry }

const byteCmp = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

function s3Encode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && /[A-Za-z0-9\-_.~/]/.test(c) ? c : b === 0x20 ? '+' : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function rollup(entries: readonly ModelEntry[], prefix: string, delimiter: string): Row[] {
  const rows: Row[] = [];
  for (const e of entries) {
    if (!e.key.startsWith(prefix)) continue;
    const at = delimiter ? e.key.slice(prefix.length).indexOf(delimiter) : -1;
    if (at >= 0) {
      const name = e.key.slice(0, prefix.length + at + delimiter.length);
      if (!(rows[rows.length - 1]?.cp && rows[rows.length - 1].name === name)) rows.push({ name, cp: true });
    } else {
      rows.push({ name: e.key, cp: false, entry: e });
    }
  }
  return rows;
}

const ROOTS: Record<ListKind, string> = {
  v1: 'ListBucketResult', v2: 'ListBucketResult', versions: 'ListVersionsResult', uploads: 'ListMultipartUploadsResult',
};

/** A sound S3 page for `q` over `entries` (sorted), as MinIO would answer with encoding-type=url. */
function shardPage(kind: ListKind, entries: ModelEntry[], q: Record<string, string>): string {
  const prefix = q.prefix ?? '';
  const delimiter = q.delimiter ?? '';
  const max = Number(q[kind === 'uploads' ? 'max-uploads' : 'max-keys'] ?? 1000);
  let rows: Row[];
  if (kind === 'v1' || kind === 'v2') {
    const token = q['continuation-token'];
    const after = token !== undefined ? Buffer.from(token, 'base64url').toString('utf8') : q['start-after'];
    rows = rollup(entries, prefix, delimiter).filter((r) => after === undefined || byteCmp(r.name, after) > 0);
  } else {
    const km = q['key-marker'];
    const idm = q[kind === 'versions' ? 'version-id-marker' : 'upload-id-marker'];
    const at = km === undefined || idm === undefined ? -1 : entries.findIndex((e) => e.key === km && e.id === idm);
    rows = rollup(entries.filter((e, i) => km === undefined || byteCmp(e.key, km) > 0 || (at >= 0 && e.key === km && i > at)),
      prefix, delimiter).filter((r) => km === undefined || !r.cp || byteCmp(r.name, km) > 0);
  }
  const page = rows.slice(0, max);
  const truncated = rows.length > max;
  const last = page[page.length - 1];
  const items = page.map((r) => {
    if (r.cp) return `<CommonPrefixes><Prefix>${s3Encode(r.name)}</Prefix></CommonPrefixes>`;
    const e = r.entry!;
    const common = `<Key>${s3Encode(e.key)}</Key>${e.id ? `<${e.element === 'Upload' ? 'UploadId' : 'VersionId'}>${e.id}</${e.element === 'Upload' ? 'UploadId' : 'VersionId'}>` : ''}`;
    return `<${e.element}>${common}<LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;0f0f&quot;</ETag>` +
      `<Size>${e.key.length}</Size><Owner><ID>o</ID><DisplayName>o</DisplayName></Owner><StorageClass>STANDARD</StorageClass></${e.element}>`;
  }).join('');
  let next = '';
  if (truncated) {
    next = kind === 'v1' || kind === 'v2'
      ? `<NextContinuationToken>${Buffer.from(last.name).toString('base64url')}</NextContinuationToken>`
      : `<NextKeyMarker>${s3Encode(last.name)}</NextKeyMarker>` +
        (last.entry?.id ? `<${kind === 'versions' ? 'NextVersionIdMarker' : 'NextUploadIdMarker'}>${last.entry.id}</${kind === 'versions' ? 'NextVersionIdMarker' : 'NextUploadIdMarker'}>` : '');
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${ROOTS[kind]} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
    `<Name>shard</Name><Prefix>${s3Encode(prefix)}</Prefix>${next}<MaxKeys>${max}</MaxKeys><EncodingType>url</EncodingType>` +
    `<IsTruncated>${truncated}</IsTruncated>${items}</${ROOTS[kind]}>`;
}

/** What a broken backend might send instead of `xml`. */
function breakPage(rng: Rng, xml: string, q: Record<string, string>): string | Buffer {
  switch (rng.int(14)) {
    case 0: case 1: case 2: return mutateBytes(rng, Buffer.from(xml), 4);
    case 3: return xml.slice(0, rng.int(xml.length));
    case 4: return xml.replace(/<IsTruncated>[^<]*<\/IsTruncated>/, rng.pick(['', '<IsTruncated>maybe</IsTruncated>', '<IsTruncated>true</IsTruncated>']));
    case 5: return xml.replace('<EncodingType>url</EncodingType>', rng.pick(['', '<EncodingType>URL</EncodingType>']));
    case 6: return xml.replace(/<Key>[^<]*<\/Key>/, rng.pick(['', '<Key>%zz</Key>', '<Key>%C3%28</Key>', '<Key>%</Key>', '<Key></Key>',
      `<Key>${'%41'.repeat(rng.pick([100, 50000]))}</Key>`, `<Key>+${'a'.repeat(rng.pick([1000, 200000]))}</Key>`,
      `<Key>${'b'.repeat(200000)}</Key>`, '<Key>&bogus;</Key>', '<Key><![CDATA[a%2Fb]]></Key>']));
    case 7: {
      const depth = rng.pick([100, 5000, 20000]);
      return xml.replace(/<(Contents|Version|DeleteMarker|Upload|CommonPrefixes)>/, (m) => `${m}${'<X>'.repeat(depth)}${'</X>'.repeat(depth)}`);
    }
    case 8: return xml.replace(/<\/?(ListBucketResult|ListVersionsResult|ListMultipartUploadsResult)/g, (m) => m.replace(/L\w+/, rng.pick(['Error', 'ListAllMyBucketsResult'])));
    case 9: {
      // The same page again, or a token that goes nowhere.
      const token = q['continuation-token'];
      return xml.replace(/<IsTruncated>false<\/IsTruncated>/, '<IsTruncated>true</IsTruncated>')
        .replace(/<NextContinuationToken>[^<]*<\/NextContinuationToken>/, '')
        .replace('<IsTruncated>', `${token && rng.bool() ? `<NextContinuationToken>${token}</NextContinuationToken>` : ''}<IsTruncated>`);
    }
    case 10: return Buffer.concat([Buffer.from(xml.slice(0, xml.length >> 1)), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(xml.slice(xml.length >> 1))]);
    case 11: return xml.replace(/<(\w+)>/, '<!DOCTYPE x [<!ENTITY e "eeeeeeeeeeeeeeeeeeeeeeee">]><$1>').replace('<Key>', '<Key>&e;');
    case 12: return xml.replace(/(<(Contents|Version|Upload)>.*?<\/\2>)/, '$1$1$1');
    default: return xml.replace(/<(Contents|Version|DeleteMarker|Upload)>(.*?)<\/\1>/, (_m, el: string, inner: string) =>
      `<${el}>${inner.replace(/<(VersionId|UploadId)>[^<]*<\/\1>/, '')}</${el}>`);
  }
}

interface MergeOutcome { xml?: string; error?: unknown; runaway?: boolean; broken: boolean }

async function runMerge(rng: Rng, kind: ListKind, entries: ModelEntry[], shardCount: number, q: URLSearchParams,
  breakRate: number): Promise<MergeOutcome> {
  const homes: ModelEntry[][] = Array.from({ length: shardCount }, () => []);
  const home = new Map<string, number>();
  for (const e of entries) {
    if (!home.has(e.key)) home.set(e.key, rng.int(shardCount));
    homes[home.get(e.key)!].push(e);
  }
  let fetches = 0;
  let broken = false;
  let runaway = false;
  const fetchers: ShardPageFetcher[] = homes.map((mine) => async (query) => {
    if (++fetches > 2000) {
      runaway = true;
      throw new S3Error('ServiceUnavailable', 'the fuzz backend stopped answering after 2000 pages');
    }
    await new Promise((r) => setImmediate(r));
    const fault = rng.bool(breakRate);
    if (fault && rng.bool(0.1)) {
      broken = true;
      throw new S3Error('ServiceUnavailable', 'the fuzz backend refused');
    }
    const page = shardPage(kind, mine, query);
    const body = fault ? breakPage(rng, page, query) : page;
    if (fault) broken = true;
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const pieces = split(bytes, randomCuts(rng, bytes.length, rng.pick([3, 100, 70000])));
    if (fault && rng.bool(0.1)) {
      // The connection breaks off mid-page.
      const cut = rng.int(pieces.length + 1);
      return Readable.from((async function* () {
        yield* pieces.slice(0, cut);
        throw new Error('socket hang up');
      })());
    }
    return Readable.from(pieces);
  });
  try {
    const request = parseListRequest(kind, 'vb', q);
    let xml = '';
    for await (const piece of mergeListing(request, fetchers, new AbortController().signal)) xml += piece;
    return { xml, runaway, broken };
  } catch (error) {
    return { error, runaway, broken };
  }
}

interface ListedItem { element: string; name: string; id?: string }

/** Reads a listing back with sax in strict mode; throws on anything not well-formed. */
function readListing(xml: string, encoded: boolean): { root: string; top: Map<string, string>; items: ListedItem[] } {
  const parser = sax.parser(true);
  const stack: string[] = [];
  const top = new Map<string, string>();
  const items: ListedItem[] = [];
  let root = '';
  let text = '';
  let item: ListedItem | undefined;
  parser.onerror = (err) => { throw err; };
  parser.onopentag = (tag) => {
    stack.push(tag.name);
    text = '';
    if (stack.length === 1) root = tag.name;
    if (stack.length === 2 && ['Contents', 'CommonPrefixes', 'Version', 'DeleteMarker', 'Upload'].includes(tag.name)) {
      item = { element: tag.name, name: '' };
      items.push(item);
    }
  };
  parser.ontext = (s) => { text += s; };
  parser.onclosetag = (name) => {
    if (stack.length === 2) top.set(name, text);
    if (stack.length === 3 && item && (name === 'Key' || name === 'Prefix')) item.name = encoded ? decodeURIComponent(text) : text;
    if (stack.length === 3 && item && (name === 'VersionId' || name === 'UploadId')) item.id = text;
    stack.pop();
  };
  parser.write(xml).close();
  if (stack.length !== 0 || root === '') throw new Error('not a whole document');
  return { root, top, items };
}

function checkListing(kind: ListKind, q: URLSearchParams, xml: string): string | undefined {
  const request = parseListRequest(kind, 'vb', q);
  // Without encoding-type=url a control character in a key goes out as a
  // character reference, as S3 writes it; XML 1.0 (and sax in strict mode)
  // refuses those, so they are read back as the raw characters they stand for.
  const readable = request.encodingUrl ? xml : xml.replace(/&#x([0-9a-f]{1,2});/gi, (m, hex: string) => {
    const c = parseInt(hex, 16);
    return c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d ? String.fromCharCode(c) : m;
  });
  let doc;
  try {
    doc = readListing(readable, request.encodingUrl);
  } catch (err) {
    return `the answer is not well-formed XML: ${(err as Error).message.split('\n')[0]}`;
  }
  if (doc.root !== ROOTS[kind]) return `root <${doc.root}>`;
  const truncated = doc.top.get('IsTruncated');
  if (truncated !== 'true' && truncated !== 'false') return `IsTruncated ${truncated}`;
  if (doc.items.length > request.maxKeys) return `${doc.items.length} entries for max-keys ${request.maxKeys}`;
  // Entries come first and common prefixes after them, each in byte order;
  // a name appears once (a key's versions or uploads once per id).
  const seen = new Set<string>();
  for (const group of [doc.items.filter((x) => x.element !== 'CommonPrefixes'), doc.items.filter((x) => x.element === 'CommonPrefixes')]) {
    for (let j = 1; j < group.length; j++) {
      const c = byteCmp(group[j - 1].name, group[j].name);
      if (c > 0 || (c === 0 && (kind === 'v1' || kind === 'v2' || group[j].element === 'CommonPrefixes'))) {
        return `${JSON.stringify(group[j - 1].name)} before ${JSON.stringify(group[j].name)}`;
      }
    }
    for (const x of group) {
      const id = `${x.element === 'CommonPrefixes' ? 'P' : 'K'}${x.name}\u0000${x.id ?? ''}`;
      if (seen.has(id)) return `${JSON.stringify(x.name)} listed twice`;
      seen.add(id);
    }
  }
  if (kind === 'v2' && truncated === 'true') {
    const token = doc.top.get('NextContinuationToken');
    if (!token) return 'a truncated V2 page without NextContinuationToken';
    const last = doc.items.filter((x) => x.element !== 'CommonPrefixes').concat(doc.items.filter((x) => x.element === 'CommonPrefixes'))
      .reduce<string | undefined>((m, x) => (m === undefined || byteCmp(x.name, m) > 0 ? x.name : m), undefined);
    try {
      if (decodeListToken(token) !== last) return `NextContinuationToken resumes after ${JSON.stringify(decodeListToken(token))}, not the last entry`;
    } catch {
      return `NextContinuationToken ${token} does not decode`;
    }
  }
  return undefined;
}

function modelEntries(rng: Rng, kind: ListKind): ModelEntry[] {
  const keys = new Set<string>();
  for (let n = rng.int(40); n > 0; n--) keys.add(randomKey(rng, 5) || 'k');
  const entries: ModelEntry[] = [];
  for (const key of keys) {
    if (kind === 'v1' || kind === 'v2') entries.push({ key, element: 'Contents' });
    else {
      for (let v = 1 + rng.int(3); v > 0; v--) {
        const element = kind === 'uploads' ? 'Upload' : rng.bool(0.8) ? 'Version' : 'DeleteMarker';
        entries.push({ key, id: `id-${rng.int(1e9).toString(36)}`, element });
      }
    }
  }
  return entries.sort((a, b) => byteCmp(a.key, b.key));
}

t.test('listing merger: backend pages broken in every way', async (t) => {
  const failures = new Failures(t, 'mergeListing');
  const tally = new Tally();
  const cases = Math.max(1, Math.ceil(CASES / 2));
  for (let i = 0; i < cases; i++) {
    const rng = new Rng(caseSeed(SEED ^ 0x3e, i));
    const kind = rng.pick<ListKind>(['v1', 'v2', 'versions', 'uploads']);
    const entries = modelEntries(rng, kind);
    const q = new URLSearchParams();
    if (rng.bool(0.3)) q.set('prefix', rng.pick(['a', 'a/', 'x/', '😀', randomKey(rng, 2)]));
    if (rng.bool(0.5)) q.set('delimiter', rng.pick(['/', 'a', '%', '😀']));
    q.set(kind === 'uploads' ? 'max-uploads' : 'max-keys', String(rng.pick([0, 1, 2, 3, 7, 1000])));
    if (rng.bool(0.5)) q.set('encoding-type', 'url');
    const marker = entries.length > 0 && rng.bool(0.3) ? rng.pick(entries) : undefined;
    if (marker && kind === 'v1') q.set('marker', marker.key);
    if (marker && kind === 'v2') q.set(rng.bool() ? 'start-after' : 'continuation-token', rng.bool() ? marker.key : encodeListToken(marker.key));
    if (marker && (kind === 'versions' || kind === 'uploads')) {
      q.set('key-marker', marker.key);
      if (rng.bool()) q.set(kind === 'versions' ? 'version-id-marker' : 'upload-id-marker', marker.id!);
    }
    try {
      parseListRequest(kind, 'vb', q);
    } catch {
      continue; // a start-after that is not a token, named as a token: not this test's subject
    }
    const breakRate = rng.pick([0, 0.2, 0.5, 1]);
    const r = await runMerge(rng, kind, entries, 1 + rng.int(4), q, breakRate);
    const input = { kind, query: q.toString(), entries: entries.length, breakRate };
    if (r.runaway) {
      failures.add(i, 'asked the backend for more than 2000 pages', input);
      continue;
    }
    if (r.error !== undefined) {
      tally.add(label(r.error));
      if (!isS3Error(r.error) || (r.error.code !== 'BadGateway' && r.error.code !== 'ServiceUnavailable')) {
        failures.add(i, `threw ${describe(r.error)}`, input);
      } else if (!r.broken) {
        failures.add(i, `sound backend pages failed: ${describe(r.error)}`, input);
      }
      continue;
    }
    tally.add(r.broken ? 'listing (from broken pages)' : 'listing');
    const problem = checkListing(kind, q, r.xml!);
    if (problem) failures.add(i, problem, { ...input, answer: r.xml!.slice(0, 3000) });
  }
  t.ok(tally.has('listing') && tally.has('BadGateway'), 'sound and broken pages were in the mix');
  failures.done(tally);
});

// Found by the fuzz run above: the merger copies an entry's child elements
// through recursively, so a deep enough page overflowed the stack and the
// RangeError reached the client as a 500 InternalError.
t.test('listing merger: a backend entry nested 50000 elements deep', async (t) => {
  const depth = 50000;
  const page = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>' +
    `<Contents><Key>k</Key><X>${'<Y>'.repeat(depth)}${'</Y>'.repeat(depth)}</X></Contents></ListBucketResult>`;
  const q = new URLSearchParams('list-type=2');
  let error: unknown;
  let xml = '';
  try {
    for await (const piece of mergeListing(parseListRequest('v2', 'vb', q), [async () => Readable.from([Buffer.from(page)])],
      new AbortController().signal)) xml += piece;
  } catch (err) {
    error = err;
  }
  if (error !== undefined) {
    t.ok(isS3Error(error) && error.code === 'BadGateway', `refused with BadGateway, not ${describe(error).split('\n').slice(0, 3).join(' ')}`);
  } else {
    t.equal(checkListing('v2', q, xml), undefined, 'or answered a well-formed listing');
  }
});

// ---------------------------------------------------------------------------
// DeleteObjects bodies

const xmlText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function deleteBody(rng: Rng): { xml: string; keys: string[]; quiet: boolean } {
  const keys = Array.from({ length: rng.bool(0.08) ? rng.pick([999, 1000, 1001]) : rng.pick([1, 2, 5, 20]) }, () => randomKey(rng, 4).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '') || 'k');
  const quiet = rng.bool();
  const objects = keys.map((k) => {
    const key = rng.bool(0.1) ? `<![CDATA[${k.replace(/]]>/g, '')}]]>` : xmlText(k);
    return `<Object><Key>${key}</Key>${rng.bool(0.2) ? `<VersionId>v${rng.int(100)}</VersionId>` : ''}</Object>`;
  });
  const decl = rng.bool() ? '<?xml version="1.0" encoding="UTF-8"?>\n' : '';
  const xml = `${decl}<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${rng.bool() ? `<Quiet>${quiet}</Quiet>` : ''}${objects.join('')}</Delete>`;
  return { xml, keys: keys.map((k, j) => (objects[j].includes('CDATA') ? k.replace(/]]>/g, '') : k)), quiet: xml.includes('<Quiet>true</Quiet>') };
}

function breakDelete(rng: Rng, xml: string): string {
  switch (rng.int(8)) {
    // Repeats stay short of the nesting depth the test below is about.
    case 0: case 1: case 2: return mutateBytes(rng, Buffer.from(xml), 4, 1000).toString('utf8');
    case 3: return xml.slice(0, rng.int(xml.length));
    case 4: return xml.replace(/<Key>[^<]*<\/Key>/, rng.pick(['', '<Key></Key>', '<Key/>', '<Key>a</Key><Key>b</Key>', '<Key><X>a</X></Key>']));
    case 5: return xml.replace(/<Delete/, rng.pick(['<Remove', '<Delete><Delete', '<!DOCTYPE d [<!ENTITY x "y">]><Delete'])).replace('<Key>', '<Key>&x;');
    case 6: return xml.replace(/<\/Delete>$/, rng.pick(['', '</Delete><Delete/>', '</Delete>garbage', '<Object><Key>k</Key></Object>']));
    default: return xml.replace(/<Object>/, `<Object>${'<Nest>'.repeat(200)}${'</Nest>'.repeat(200)}`);
  }
}

t.test('DeleteObjects bodies: random and mutated XML', async (t) => {
  const failures = new Failures(t, 'parseDeleteRequest');
  const tally = new Tally();
  for (let i = 0; i < CASES; i++) {
    const rng = new Rng(caseSeed(SEED ^ 0xde1, i));
    const sound = deleteBody(rng);
    const mutated = rng.bool(0.8);
    const xml = mutated ? breakDelete(rng, sound.xml) : sound.xml;
    let result: ReturnType<typeof parseDeleteRequest> | undefined;
    let err: unknown;
    const started = process.hrtime.bigint();
    try {
      result = parseDeleteRequest(xml);
    } catch (e) {
      err = e;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // The event loop is shared by every request in flight.
    if (ms > 500) failures.add(i, `took ${ms.toFixed(0)} ms for ${xml.length} bytes`, xml);
    if (!result) {
      tally.add(label(err));
      if (!isS3Error(err) || err.code !== 'MalformedXML') failures.add(i, `threw ${describe(err)}`, xml);
      else if (xml === sound.xml && sound.keys.length <= 1000) failures.add(i, 'refused a sound body', xml);
      continue;
    }
    tally.add('parsed');
    if (result.objects.length === 0 || result.objects.length > 1000) failures.add(i, `${result.objects.length} objects`, xml);
    else if (result.objects.some((o) => typeof o.key !== 'string' || o.key === '')) failures.add(i, 'an object without a key', xml);
    else if (xml === sound.xml && (sound.keys.length > 1000 || JSON.stringify(result.objects.map((o) => o.key)) !== JSON.stringify(sound.keys) || result.quiet !== sound.quiet)) {
      failures.add(i, 'a sound body parsed to other keys', xml);
    }
  }
  t.ok(tally.has('parsed') && tally.has('MalformedXML'), 'both outcomes were in the mix');
  failures.done(tally);
});

// Found by the fuzz run above: a body well under the 8 MiB cap pinned the
// event loop for seconds, parsing time growing with the square of its depth.
t.test('DeleteObjects: deeply nested XML is dealt with promptly', async (t) => {
  const depth = 12000;
  const xml = `<Delete>${'<a>'.repeat(depth)}${'</a>'.repeat(depth)}<Object><Key>k</Key></Object></Delete>`;
  const started = process.hrtime.bigint();
  let result;
  try {
    result = parseDeleteRequest(xml);
  } catch (err) {
    result = err;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(!(result instanceof Error) || isS3Error(result), `parsed or refused with an S3Error${result instanceof Error ? `: ${describe(result)}` : ''}`);
  t.ok(ms < 1000, `${xml.length} bytes nested ${depth} deep parsed in ${ms.toFixed(0)} ms (under 1 s)`);
});
