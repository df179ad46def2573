import type { IncomingHttpHeaders } from 'node:http';
import { setMaxListeners } from 'node:events';
import sax from 'sax';
import type { Dispatcher } from 'undici';
import type { Config } from './config';
import { Pools, poolOptions } from './backend';
import type { Backend } from './backend';
import { VirtualBucket } from './virtual-bucket';
import { hashKey } from './ring';
import { isObjectHeader, objectAttributes, unquoted } from './forward';
import { ProgressReporter, formatBytes } from './progress';
import type { Output, Totals } from './progress';
import { feed } from './xml-feed';

// `rebalance`: after a ring change, every object that is not at its current
// owner is moved there, so that reads need no earlier ring and the config
// can drop `previous_rings`. It keeps no state of its own: what is still to
// do is read from the shards each time, so a second run, or one after an
// interruption, finds only what the first left and ends in the same state.
//
// It must run once every proxy replica has the new config: only then do all
// writes go to current owners, and a copy at the owner is the one reads
// return, so it wins over any other copy of the key.

const DEFAULT_CONCURRENCY = 8;

/** A copy of a key on a shard, as listed. */
interface Copy { backend: Backend; size: number; etag: string }
/** A key that sits somewhere other than its owner: those copies, the one
 * reads find first at the front. */
interface Misplaced { key: string; copies: Copy[] }
/** All misplaced keys of one hash key: they move together. */
interface Block { target: Backend; keys: Misplaced[] }

export interface RebalanceOptions {
  /** Only find out what would move. */
  dryRun?: boolean;
  /** Blocks moved at once. */
  concurrency?: number;
  /** Stops taking up blocks and aborts the requests under way. */
  signal?: AbortSignal;
  /** Once what is misplaced has been found. */
  onPlan?: (total: Totals) => void;
  onProgress?: (done: Totals) => void;
}

export interface RebalanceReport {
  virtualBucket: string;
  /** Keys found away from their owner, with the size of the copy reads find. */
  total: Totals;
  /** Of them, those dealt with (or, dry run, looked at). */
  done: Totals;
  /** `from -> to`: what was copied (dry run: would be). */
  routes: Map<string, Totals>;
  /** Keys whose owner already had a copy, so the others were only deleted. */
  alreadyAtOwner: number;
  /** Keys a client deleted while they were being moved. */
  vanished: number;
  /** Copies deleted from shards other than the owner. */
  deleted: number;
  failures: { key: string; reason: string }[];
  interrupted: boolean;
  /** Multipart uploads open, when the run began, on a shard that is not
   * their key's owner: what they complete will sit there. */
  openUploads: number;
}

export async function rebalance(vb: VirtualBucket, opts: RebalanceOptions = {}): Promise<RebalanceReport> {
  const signal = opts.signal ?? new AbortController().signal;
  const report: RebalanceReport = {
    virtualBucket: vb.name, total: { objects: 0, bytes: 0 }, done: { objects: 0, bytes: 0 }, routes: new Map(),
    alreadyAtOwner: 0, vanished: 0, deleted: 0, failures: [], interrupted: false, openUploads: 0,
  };
  // Uploads first: one begun later goes to the current owner anyway.
  report.openUploads = await countMisplacedUploads(vb, signal);
  const blocks = await findMisplaced(vb, signal);
  for (const m of blocks.flatMap((b) => b.keys)) {
    report.total.objects += 1;
    report.total.bytes += m.copies[0].size;
  }
  opts.onPlan?.({ ...report.total });

  const moveBlock = async (block: Block): Promise<void> => {
    const settled: Misplaced[] = [];
    let whole = true;
    for (const m of block.keys) {
      const source = m.copies[0];
      try {
        const outcome = await place(m, block.target, opts.dryRun ?? false, signal);
        if (outcome === 'copied') {
          const route = `${source.backend.bucket} -> ${block.target.bucket}`;
          const r = report.routes.get(route) ?? { objects: 0, bytes: 0 };
          report.routes.set(route, { objects: r.objects + 1, bytes: r.bytes + source.size });
        }
        if (outcome === 'present') report.alreadyAtOwner += 1;
        if (outcome === 'vanished') report.vanished += 1;
        if (outcome !== 'vanished') settled.push(m);
      } catch (err) {
        if (signal.aborted) return;
        whole = false;
        report.failures.push({ key: m.key, reason: (err as Error).message });
      }
      report.done.objects += 1;
      report.done.bytes += source.size;
      opts.onProgress?.({ ...report.done });
    }
    // A block leaves its old place only once all of it is at the owner, so
    // its files are never split between a half-moved and a half-left copy.
    if (opts.dryRun || !whole || signal.aborted) return;
    for (const m of settled) {
      for (const c of m.copies) {
        try {
          // Only the copy listed, and only while the owner has one. A copy
          // stored since (an upload begun before the ring change, completed
          // where it began) is newer than the owner's, which its completion
          // removed unless it was the same object.
          const now = await head(c.backend, m.key, signal);
          if (!now) continue;
          if (unquoted(now.etag) !== unquoted(c.etag) || !await head(block.target, m.key, signal)) {
            report.failures.push({ key: m.key, reason: `the copy on ${c.backend.bucket} changed while it was being moved: run rebalance again` });
            continue;
          }
          await deleteCopy(c.backend, m.key, signal);
          report.deleted += 1;
        } catch (err) {
          if (signal.aborted) return;
          report.failures.push({ key: m.key, reason: `the owner has it, but the copy on ${c.backend.bucket} stays: ${(err as Error).message}` });
        }
      }
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < blocks.length && !signal.aborted) await moveBlock(blocks[next++]);
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY) }, worker));
  report.interrupted = signal.aborted;
  return report;
}

// ---------------------------------------------------------------------------
// Finding what is misplaced.

async function findMisplaced(vb: VirtualBucket, signal: AbortSignal): Promise<Block[]> {
  const found = new Map<string, Copy[]>();
  await Promise.all(vb.backends.map(async (backend) => {
    for await (const page of listPages(backend, 'objects', signal)) {
      for (const e of page) {
        const key = decodeKey(e.Key);
        if (vb.owner(key) === backend) continue;
        const copy = { backend, size: Number(e.Size), etag: e.ETag };
        const copies = found.get(key);
        if (copies) copies.push(copy);
        else found.set(key, [copy]);
      }
    }
  }));
  const blocks = new Map<string, Block>();
  for (const [key, copies] of found) {
    // The copy reads find first (the earliest of the key's owners) is the one
    // moved; a copy on a shard no ring gives the key comes last.
    const owners = vb.owners(key);
    const rank = (c: Copy) => {
      const i = owners.indexOf(c.backend);
      return i < 0 ? owners.length + vb.backends.indexOf(c.backend) : i;
    };
    copies.sort((a, b) => rank(a) - rank(b));
    const h = hashKey(key, vb.config.hashPrefix);
    const block = blocks.get(h) ?? { target: owners[0], keys: [] };
    block.keys.push({ key, copies });
    blocks.set(h, block);
  }
  return [...blocks.values()];
}

async function countMisplacedUploads(vb: VirtualBucket, signal: AbortSignal): Promise<number> {
  let n = 0;
  await Promise.all(vb.backends.map(async (backend) => {
    for await (const page of listPages(backend, 'uploads', signal)) {
      n += page.filter((u) => vb.owner(decodeKey(u.Key)) !== backend).length;
    }
  }));
  return n;
}

type Entry = Record<string, string>;

/** A shard's objects (or open uploads), a page at a time. */
async function* listPages(b: Backend, what: 'objects' | 'uploads', signal: AbortSignal): AsyncGenerator<Entry[]> {
  const element = what === 'objects' ? 'Contents' : 'Upload';
  let next: [string, string][] = [];
  for (;;) {
    const query: [string, string][] = what === 'objects'
      ? [['list-type', '2'], ['encoding-type', 'url'], ['max-keys', '1000'], ...next]
      : [['uploads', ''], ['encoding-type', 'url'], ['max-uploads', '1000'], ...next];
    const r = await b.request({ method: 'GET', query, signal, operation: what === 'objects' ? 'ListObjectsV2' : 'ListMultipartUploads' });
    const xml = await r.body.text();
    if (r.statusCode === 404 && errorCode(xml) === 'NoSuchBucket') {
      throw new Error(`shard bucket ${b.bucket} does not exist yet: start the proxy with this config, ` +
        'which creates it, or run "tempo-s3-shard check"');
    }
    if (r.statusCode !== 200) throw new Error(`listing shard bucket ${b.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
    const page = parseXml(xml, element);
    yield page.entries;
    if (page.fields.IsTruncated !== 'true') return;
    next = what === 'objects'
      ? [['continuation-token', page.fields.NextContinuationToken]]
      : [['key-marker', decodeKey(page.fields.NextKeyMarker)], ['upload-id-marker', page.fields.NextUploadIdMarker]];
  }
}

/** The `element`s anywhere in the document, each as its child elements'
 * texts, and the text of the root's other children. */
function parseXml(xml: string, element: string): { entries: Entry[]; fields: Entry } {
  const parser = sax.parser(true);
  const entries: Entry[] = [];
  const fields: Entry = {};
  let depth = 0;
  let entry: Entry | undefined;
  let entryDepth = 0;
  let text = '';
  parser.onopentag = (tag) => {
    depth += 1;
    text = '';
    if (!entry && tag.name === element) {
      entry = {};
      entryDepth = depth;
    }
  };
  parser.ontext = parser.oncdata = (t) => { text += t; };
  parser.onclosetag = (name) => {
    if (entry && depth === entryDepth) {
      entries.push(entry);
      entry = undefined;
    } else if (entry && depth === entryDepth + 1) {
      entry[name] = text;
    } else if (!entry && depth === 2) {
      fields[name] = text;
    }
    depth -= 1;
  };
  parser.onerror = (err) => { throw new Error(`a shard answered XML that does not parse: ${err.message.split('\n')[0]}`); };
  feed(parser, xml);
  parser.close();
  return { entries, fields };
}

// Listings are asked for with encoding-type=url, so that any key survives
// XML; S3 encodes a space as `+`.
function decodeKey(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

function errorCode(xml: string): string {
  return /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ?? '';
}

// ---------------------------------------------------------------------------
// Moving one key.
//
// A move creates the key at its owner only where the owner still has none:
// both ways below send `If-None-Match: *` with the request that makes the
// object appear (a PUT, or the completion of a multipart upload), which S3
// and MinIO check at the moment the object is stored. A client's write made
// meanwhile is therefore never overwritten. (CopyObject would keep the bytes
// server-side, but MinIO ignores the condition there, and a client's write
// between our look at the owner and the copy was lost.) Both ways also keep
// the source's ETag, so the owner's answer checks the bytes.

type Outcome = 'copied' | 'present' | 'vanished';
/** An object a move stored at the owner: its ETag and what a HEAD shows of
 * its attributes (see objectAttributes). */
interface Stored { etag: string; attributes: string }
// A move's answer: what it stored, or why it stored nothing.
type Moved = Stored | Exclude<Outcome, 'copied'>;

/** Brings the key to its owner (dry run: only finds out whether it must). */
async function place(m: Misplaced, target: Backend, dryRun: boolean, signal: AbortSignal): Promise<Outcome> {
  // What the owner holds is what reads return: it wins over every other copy.
  if (await head(target, m.key, signal)) return 'present';
  if (dryRun) return 'copied';
  const source = m.copies[0];
  const parts = MULTIPART_ETAG.exec(unquoted(source.etag));
  const written = parts
    ? await multipartMove(source, target, m.key, Number(parts[1]), signal)
    : await streamedPut(source, target, m.key, signal);
  if (typeof written === 'string') return written;

  return settle(m.key, source, target, written);
}

/** Checks a copy just stored at the owner. It runs to the end even once the
 * run is stopped, and a copy it cannot check is withdrawn: left there
 * unchecked, it would be taken, on the next run, for one that wins over
 * every other. */
async function settle(key: string, source: Copy, target: Backend, written: Stored): Promise<Outcome> {
  // A client may have written or deleted the key meanwhile, and the order in
  // which each reaches the two copies tells which: a delete removes the
  // source first and the owner's copy after it; a write is stored at the
  // owner first and then removes a source that differs from it (forward.ts).
  let sourceLeft: Found | undefined;
  let now: Found | undefined;
  try {
    sourceLeft = await head(source.backend, key);
    now = await head(target, key);
  } catch (err) {
    await withdraw(target, key, written);
    throw err;
  }
  const ours = now !== undefined && unquoted(now.etag) === unquoted(written.etag) && now.attributes === written.attributes;
  // Stored at the source anew while it was moved (an upload begun before the
  // ring change completes where it began): what was moved is the older object.
  if (sourceLeft && (unquoted(sourceLeft.etag) !== unquoted(source.etag) || sourceLeft.attributes !== written.attributes)) {
    if (ours) await deleteCopy(target, key);
    throw new Error(`the source changed while it was being moved: run rebalance again`);
  }
  // Deleted right after the move: by a client, whose delete reached the owner too.
  if (!now) return 'vanished';
  // A client wrote the key at its owner after the move: that write wins.
  if (!ours) return 'present';
  // Deleted by a client while it was moved: the move would bring it back.
  if (!sourceLeft) {
    await deleteCopy(target, key);
    return 'vanished';
  }
  if (unquoted(now.etag) !== unquoted(source.etag) || now.size !== source.size) {
    await deleteCopy(target, key);
    throw new Error(`verification failed, the source stays: the copy on ${target.bucket} has ETag ${now.etag} and ` +
      `${now.size} bytes, not ${source.etag} and ${source.size}`);
  }
  return 'copied';
}

/** For a request that stores a move's copy and fails without an answer (the
 * run stopped, the connection broke): the copy may have been stored all the
 * same, and is withdrawn. Should it be a client's write of the same object
 * instead, the source still holds that object (forward.ts leaves a copy the
 * same as the one written), so reads find it there. */
function stray(target: Backend, key: string, stored: Stored): (err: unknown) => Promise<never> {
  return async (err) => {
    await withdraw(target, key, stored);
    throw err;
  };
}

/** Removes the copy a move stored, unless a client's write has replaced it. */
async function withdraw(target: Backend, key: string, written: Stored): Promise<void> {
  const now = await head(target, key).catch(() => undefined);
  if (now && unquoted(now.etag) === unquoted(written.etag) && now.attributes === written.attributes) {
    await deleteCopy(target, key).catch(() => {});
  }
}

// The ETag S3 gives a multipart upload: the MD5 of its parts' MD5s, and their count.
const MULTIPART_ETAG = /^[0-9a-f]{32}-(\d+)$/;

/** A plain object: read and written again as one PUT, whose Content-MD5 (the
 * source's ETag) the owner checks. */
async function streamedPut(source: Copy, target: Backend, key: string, signal: AbortSignal): Promise<Moved> {
  const got = await source.backend.request({
    method: 'GET', key, signal, operation: 'GetObject',
    // The object listed, not one written since; and its checksum, to be kept.
    headers: { 'if-match': source.etag, 'x-amz-checksum-mode': 'ENABLED' },
  });
  try {
    if (got.statusCode !== 200) return await sourceRefused(got, source);
    const headers = await attributes(got.headers, source.backend, key, signal);
    headers['content-length'] = String(got.headers['content-length']);
    const etag = unquoted(source.etag);
    if (/^[0-9a-f]{32}$/.test(etag)) headers['content-md5'] = Buffer.from(etag, 'hex').toString('base64');
    for (const name of CHECKSUMS) {
      const value = got.headers[name];
      // A checksum of the whole object; one of parts (`…-N`) is no header a PUT takes.
      if (typeof value === 'string' && !value.includes('-')) headers[name] = value;
    }
    headers['if-none-match'] = '*';
    got.body.on('error', () => {});
    const stored = { etag: source.etag, attributes: objectAttributes(got.headers) };
    const put = await target.request({ method: 'PUT', key, headers, body: got.body, signal, operation: 'PutObject' })
      .catch(stray(target, key, stored));
    const xml = await put.body.text();
    if (put.statusCode === 412) return 'present';
    if (put.statusCode !== 200) throw new Error(`writing to ${target.bucket} failed: ${put.statusCode} ${errorCode(xml)}`);
    return stored;
  } finally {
    got.body.destroy();
  }
}

/** An object uploaded in parts: uploaded again in parts of the same sizes, so
 * that it keeps its ETag. Between shards of one endpoint each part is copied
 * by the backend itself (UploadPartCopy); otherwise it is streamed through. */
async function multipartMove(source: Copy, target: Backend, key: string, count: number, signal: AbortSignal): Promise<Moved> {
  const layout = await partLayout(source, key, count, signal);
  if (typeof layout === 'string') return layout;
  // Not stopped halfway: an upload begun whose id we never read would stay open.
  const begun = await target.request({
    method: 'POST', key, query: [['uploads', '']], operation: 'CreateMultipartUpload',
    headers: { ...await attributes(layout.headers, source.backend, key, signal), 'if-none-match': '*' },
  });
  const begunXml = await begun.body.text();
  if (begun.statusCode === 412) return 'present';
  const uploadId = /<UploadId>([^<]*)<\/UploadId>/.exec(begunXml)?.[1];
  if (begun.statusCode !== 200 || !uploadId) throw new Error(`starting an upload on ${target.bucket} failed: ${begun.statusCode} ${errorCode(begunXml)}`);
  let completed = false;
  try {
    const etags: string[] = [];
    let offset = 0;
    for (const [i, size] of layout.sizes.entries()) {
      const range = `bytes=${offset}-${offset + size - 1}`;
      offset += size;
      const part = { target, key, uploadId, number: i + 1, range, size, signal };
      // An empty part has no range to read or copy.
      const etag = size === 0 ? await emptyPart(part)
        : source.backend.sharesStorageWith(target) ? await copyPart(source, part) : await streamPart(source, part);
      if (etag === 'vanished') return etag;
      etags.push(etag);
    }
    const xml = '<CompleteMultipartUpload>' +
      etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join('') +
      '</CompleteMultipartUpload>';
    signal.throwIfAborted();
    // Not stopped halfway: an object stored unanswered would stay unchecked.
    const stored = { etag: source.etag, attributes: objectAttributes(layout.headers) };
    const done = await target.request({
      method: 'POST', key, query: [['uploadId', uploadId]], body: Buffer.from(xml), operation: 'CompleteMultipartUpload',
      headers: { 'content-length': String(Buffer.byteLength(xml)), 'content-type': 'application/xml', 'if-none-match': '*' },
    }).catch(stray(target, key, stored));
    const doneXml = await done.body.text();
    if (done.statusCode === 412) return 'present';
    // S3 may answer 200 and report a failure in the body.
    const etag = /<CompleteMultipartUploadResult[\s>][\s\S]*<ETag>([^<]*)<\/ETag>/.exec(doneXml)?.[1];
    if (done.statusCode !== 200 || etag === undefined) throw new Error(`completing the upload on ${target.bucket} failed: ${done.statusCode} ${errorCode(doneXml)}`);
    completed = true;
    return { etag: etag.replace(/&quot;|&#34;/g, '"'), attributes: stored.attributes };
  } finally {
    // Nothing half-moved stays behind, also when interrupted.
    if (!completed) await abortUpload(target, key, uploadId);
  }
}

/** Each part's size (HEAD with partNumber), and the object's headers. */
async function partLayout(source: Copy, key: string, count: number, signal: AbortSignal):
  Promise<{ sizes: number[]; headers: IncomingHttpHeaders } | 'vanished'> {
  const sizes: number[] = [];
  let headers: IncomingHttpHeaders = {};
  for (let n = 1; n <= count; n++) {
    const r = await source.backend.request({
      method: 'HEAD', key, query: [['partNumber', String(n)]], headers: { 'if-match': source.etag }, signal, operation: 'HeadObject',
    });
    await r.body.dump();
    if (r.statusCode === 404) return 'vanished';
    if (r.statusCode === 412) preconditionFailed('');
    // MinIO answers an empty part so: it has no byte to range over.
    if (r.statusCode === 416) {
      sizes.push(0);
      continue;
    }
    if (r.statusCode !== 200 && r.statusCode !== 206) throw new Error(`HEAD of part ${n} on ${source.backend.bucket} answered ${r.statusCode}`);
    if (n === 1) headers = r.headers;
    sizes.push(Number(r.headers['content-length']));
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== source.size) throw new Error(`the parts on ${source.backend.bucket} add up to ${total} bytes, not ${source.size}`);
  return { sizes, headers };
}

interface Part { target: Backend; key: string; uploadId: string; number: number; range: string; size: number; signal: AbortSignal }

function partQuery(p: Part): [string, string][] {
  return [['partNumber', String(p.number)], ['uploadId', p.uploadId]];
}

async function copyPart(source: Copy, p: Part): Promise<string | 'vanished'> {
  const r = await p.target.request({
    method: 'PUT', key: p.key, query: partQuery(p), signal: p.signal, operation: 'UploadPartCopy',
    headers: {
      'x-amz-copy-source': source.backend.copySource(p.key),
      'x-amz-copy-source-range': p.range,
      'x-amz-copy-source-if-match': source.etag,
    },
  });
  const xml = await r.body.text();
  if (r.statusCode === 404 && errorCode(xml) === 'NoSuchKey') return 'vanished';
  if (r.statusCode === 412) preconditionFailed(xml);
  const etag = /<CopyPartResult[\s>][\s\S]*<ETag>([^<]*)<\/ETag>/.exec(xml)?.[1];
  if (r.statusCode !== 200 || etag === undefined) throw new Error(`copying part ${p.number} to ${p.target.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
  return etag.replace(/&quot;|&#34;/g, '"');
}

async function emptyPart(p: Part): Promise<string> {
  const put = await p.target.request({
    method: 'PUT', key: p.key, query: partQuery(p), signal: p.signal, operation: 'UploadPart', headers: { 'content-length': '0' },
  });
  const xml = await put.body.text();
  if (put.statusCode !== 200) throw new Error(`writing part ${p.number} to ${p.target.bucket} failed: ${put.statusCode} ${errorCode(xml)}`);
  return String(put.headers.etag ?? '');
}

async function streamPart(source: Copy, p: Part): Promise<string | 'vanished'> {
  const got = await source.backend.request({
    method: 'GET', key: p.key, headers: { 'if-match': source.etag, range: p.range }, signal: p.signal, operation: 'GetObject',
  });
  try {
    if (got.statusCode !== 206) return await sourceRefused(got, source);
    got.body.on('error', () => {});
    const put = await p.target.request({
      method: 'PUT', key: p.key, query: partQuery(p), body: got.body, signal: p.signal, operation: 'UploadPart',
      headers: { 'content-length': String(p.size) },
    });
    const xml = await put.body.text();
    if (put.statusCode !== 200) throw new Error(`writing part ${p.number} to ${p.target.bucket} failed: ${put.statusCode} ${errorCode(xml)}`);
    return String(put.headers.etag ?? '');
  } finally {
    got.body.destroy();
  }
}

async function abortUpload(b: Backend, key: string, uploadId: string): Promise<void> {
  // Also after an interruption: the run's own signal has fired by then.
  const r = await b.request({ method: 'DELETE', key, query: [['uploadId', uploadId]], operation: 'AbortMultipartUpload' })
    .catch(() => undefined);
  await r?.body.dump();
}

/** A read of the source that did not answer the object. */
async function sourceRefused(got: Dispatcher.ResponseData, source: Copy): Promise<'vanished'> {
  const xml = await got.body.text();
  if (got.statusCode === 404) return 'vanished';
  if (got.statusCode === 412) preconditionFailed(xml);
  throw new Error(`reading from ${source.backend.bucket} failed: ${got.statusCode} ${errorCode(xml)}`);
}

// The copy-source condition failed: the source changed after the listing.
function preconditionFailed(xml: string): never {
  throw new Error(`the source changed while it was being moved (${errorCode(xml) || 'PreconditionFailed'}): run rebalance again`);
}

const CHECKSUMS = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'].map((a) => `x-amz-checksum-${a}`);

/** The headers that give the moved object the source's metadata and tags. */
async function attributes(from: IncomingHttpHeaders, b: Backend, key: string, signal: AbortSignal): Promise<Record<string, string>> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(from)) {
    if (typeof value === 'string' && isObjectHeader(name)) headers[name] = value;
  }
  if (Number(from['x-amz-tagging-count'] ?? 0) > 0) headers['x-amz-tagging'] = await tagging(b, key, signal);
  return headers;
}

async function tagging(b: Backend, key: string, signal: AbortSignal): Promise<string> {
  const r = await b.request({ method: 'GET', key, query: [['tagging', '']], signal, operation: 'GetObjectTagging' });
  const xml = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`reading the tags on ${b.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
  return parseXml(xml, 'Tag').entries
    .map((t) => `${encodeURIComponent(t.Key ?? '')}=${encodeURIComponent(t.Value ?? '')}`).join('&');
}

interface Found { size: number; etag: string; attributes: string }

async function head(b: Backend, key: string, signal?: AbortSignal): Promise<Found | undefined> {
  const r = await b.request({ method: 'HEAD', key, signal, operation: 'HeadObject' });
  await r.body.dump();
  if (r.statusCode === 404) return undefined;
  if (r.statusCode !== 200) throw new Error(`HEAD on ${b.bucket} answered ${r.statusCode}`);
  return { size: Number(r.headers['content-length']), etag: String(r.headers.etag ?? ''), attributes: objectAttributes(r.headers) };
}

async function deleteCopy(b: Backend, key: string, signal?: AbortSignal): Promise<void> {
  const r = await b.request({ method: 'DELETE', key, signal, operation: 'DeleteObject' });
  const xml = await r.body.text();
  if (r.statusCode !== 204 && r.statusCode !== 200) throw new Error(`deleting on ${b.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
}


// ---------------------------------------------------------------------------
// The command.

export async function rebalanceCommand(config: Config, args: { dryRun?: boolean; concurrency?: string },
  out: Output = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<'ok' | 'failure' | 'usage'> {
  const concurrency = args.concurrency === undefined ? DEFAULT_CONCURRENCY : Number(args.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    err.write(`--concurrency must be a whole number from 1 to 256, not ${JSON.stringify(args.concurrency)}\n`);
    return 'usage';
  }
  const pools = new Pools(poolOptions(config.limits));
  const controller = new AbortController();
  // Every request in flight listens on it: the copies and each shard's listing.
  setMaxListeners(0, controller.signal);
  // Ctrl-C stops cleanly: nothing is left half-moved that a rerun would not finish.
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let ok = true;
  try {
    for (const vbConfig of config.virtualBuckets) {
      const vb = new VirtualBucket(vbConfig, pools);
      let progress: ProgressReporter | undefined;
      const report = await rebalance(vb, {
        dryRun: args.dryRun, concurrency, signal: controller.signal,
        onPlan: (total) => { if (!args.dryRun) progress = new ProgressReporter(out, vb.name, total); },
        onProgress: (done) => progress?.update(done),
      });
      progress?.finish(report.done);
      for (const f of report.failures) err.write(`${vb.name}: ${JSON.stringify(f.key)}: ${f.reason}\n`);
      if (args.dryRun) writeDryRun(out, report);
      else writeSummary(out, report, vbConfig.previousRings.length > 0);
      ok &&= report.failures.length === 0 && !report.interrupted;
      if (report.interrupted) break;
    }
  } catch (e) {
    err.write(`rebalance: ${(e as Error).message}\n`);
    ok = false;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await pools.close();
  }
  return ok ? 'ok' : 'failure';
}

function moved(report: RebalanceReport): Totals {
  return [...report.routes.values()].reduce((a, r) => ({ objects: a.objects + r.objects, bytes: a.bytes + r.bytes }), { objects: 0, bytes: 0 });
}

function writeDryRun(out: Output, report: RebalanceReport): void {
  const m = moved(report);
  out.write(`${report.virtualBucket}: ${m.objects} objects (${formatBytes(m.bytes)}) would move` +
    `${report.alreadyAtOwner ? `; ${report.alreadyAtOwner} more are at their owner already and would only be deleted elsewhere` : ''}\n`);
  for (const [route, r] of [...report.routes].sort(([a], [b]) => a.localeCompare(b))) {
    out.write(`  ${route}: ${r.objects} objects, ${formatBytes(r.bytes)}\n`);
  }
  if (report.openUploads) {
    out.write(`  ${report.openUploads} multipart uploads begun before the ring change are open on an earlier owner\n`);
  }
}

function writeSummary(out: Output, report: RebalanceReport, hasPreviousRings: boolean): void {
  const m = moved(report);
  const name = report.virtualBucket;
  const message = report.interrupted ? `interrupted: run the same command again to finish`
    : report.failures.length ? `${report.failures.length} objects could not be moved (see above); they stay readable where they are: run rebalance again`
    : report.openUploads ? `every object sits at its current owner, but ${report.openUploads} multipart uploads begun before the ring change ` +
      `are still open on an earlier owner: keep previous_rings until they are completed or aborted, then run rebalance again`
    : hasPreviousRings ? `every object sits at its current owner: the older ring generations (previous_rings) of ${name} can now be dropped from the config`
    : `every object sits at its owner`;
  if (!out.isTTY) {
    out.write(JSON.stringify({
      event: 'done', virtual_bucket: name, moved_objects: m.objects, moved_bytes: m.bytes, already_at_owner: report.alreadyAtOwner,
      deleted_copies: report.deleted, vanished: report.vanished, failed: report.failures.length, interrupted: report.interrupted, message,
    }) + '\n');
    return;
  }
  out.write(`${name}: moved ${m.objects} objects (${formatBytes(m.bytes)}), deleted ${report.deleted} copies away from their owner` +
    `${report.vanished ? `, ${report.vanished} deleted by clients meanwhile` : ''}\n${message}\n`);
}
