import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Transform } from 'node:stream';
import sax from 'sax';
import type { Config } from './config';
import { Pools, poolOptions } from './backend';
import type { Backend } from './backend';
import { VirtualBucket } from './virtual-bucket';
import { hashKey } from './ring';
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
// A single PUT or CopyObject moves at most 5 GiB.
const MAX_SINGLE_COPY = 5 * 1024 ** 3;

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

type Outcome = 'copied' | 'present' | 'vanished';
interface Written { etag: string; md5?: string }

/** Brings the key to its owner (dry run: only finds out whether it must). */
async function place(m: Misplaced, target: Backend, dryRun: boolean, signal: AbortSignal): Promise<Outcome> {
  // What the owner holds is what reads return: it wins over every other copy.
  if (await head(target, m.key, signal)) return 'present';
  if (dryRun) return 'copied';
  const source = m.copies[0];
  if (source.size > MAX_SINGLE_COPY) throw new Error(`larger than the ${formatBytes(MAX_SINGLE_COPY)} one copy request can move`);
  const written = source.backend.sharesStorageWith(target)
    ? await serverSideCopy(source, target, m.key, signal)
    : await streamedCopy(source, target, m.key, signal);
  if (typeof written === 'string') return written;

  const now = await head(target, m.key, signal);
  // Deleted right after the copy: a client's delete, which removed the source first.
  if (!now) return 'vanished';
  // A client wrote the key at its owner after the copy: that write wins.
  if (unquote(now.etag) !== unquote(written.etag)) return 'present';
  const etag = unquote(source.etag);
  const fault = now.size !== source.size ? `the copy on ${target.bucket} has ${now.size} bytes, not ${source.size}`
    : !etag.includes('-') && unquote(now.etag) !== etag ? `the copy on ${target.bucket} has ETag ${now.etag}, not ${source.etag}`
    // A multipart ETag is no digest of the bytes: a streamed copy is checked
    // against the digest of what was streamed, a server-side one by its size.
    : written.md5 !== undefined && unquote(now.etag) !== written.md5 ? `the copy on ${target.bucket} is not what was streamed`
    : undefined;
  if (fault) {
    await deleteCopy(target, m.key, signal);
    throw new Error(`verification failed, the source stays: ${fault}`);
  }
  // A client may have deleted the key while it was copied. Deletes reach the
  // earlier owners before the current one: if the source is gone now, the
  // copy would bring a deleted key back; if it is still here, a delete still
  // to come will reach the copy too.
  if (!await head(source.backend, m.key, signal)) {
    await deleteCopy(target, m.key, signal);
    return 'vanished';
  }
  return 'copied';
}

async function serverSideCopy(source: Copy, target: Backend, key: string, signal: AbortSignal): Promise<Written | Outcome> {
  const r = await target.request({
    method: 'PUT', key, signal, operation: 'CopyObject',
    headers: {
      'x-amz-copy-source': source.backend.copySource(key),
      // The object listed, not one written since.
      'x-amz-copy-source-if-match': source.etag,
      // Where the backend honours it, a client's write made since the owner
      // was found empty is not overwritten. MinIO ignores it on a copy, which
      // leaves that moment (between the HEAD and the copy) open there.
      'if-none-match': '*',
    },
  });
  const xml = await r.body.text();
  if (r.statusCode === 404 && errorCode(xml) === 'NoSuchKey') return 'vanished';
  if (r.statusCode === 412) return preconditionFailed(xml);
  // S3 may answer a copy 200 and report its failure in the body.
  const etag = /<CopyObjectResult[\s>][\s\S]*<ETag>([^<]*)<\/ETag>/.exec(xml)?.[1];
  if (r.statusCode !== 200 || etag === undefined) throw new Error(`copying to ${target.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
  return { etag: etag.replace(/&quot;|&#34;/g, '"') };
}

async function streamedCopy(source: Copy, target: Backend, key: string, signal: AbortSignal): Promise<Written | Outcome> {
  const got = await source.backend.request({ method: 'GET', key, headers: { 'if-match': source.etag }, signal, operation: 'GetObject' });
  try {
    if (got.statusCode !== 200) {
      const xml = await got.body.text();
      if (got.statusCode === 404) return 'vanished';
      if (got.statusCode === 412) return preconditionFailed(xml);
      throw new Error(`reading from ${source.backend.bucket} failed: ${got.statusCode} ${errorCode(xml)}`);
    }
    const headers: Record<string, string> = {
      'content-length': String(got.headers['content-length']),
      // Only where the owner has nothing: a client's write since wins.
      'if-none-match': '*',
    };
    for (const [name, value] of Object.entries(got.headers)) {
      if (typeof value === 'string' && (name.startsWith('x-amz-meta-') || CARRIED.includes(name))) headers[name] = value;
    }
    // A plain ETag is the MD5 of the bytes: the target then checks them itself.
    const etag = unquote(source.etag);
    if (/^[0-9a-f]{32}$/.test(etag)) headers['content-md5'] = Buffer.from(etag, 'hex').toString('base64');
    if (Number(got.headers['x-amz-tagging-count'] ?? 0) > 0) headers['x-amz-tagging'] = await tagging(source.backend, key, signal);
    const md5 = createHash('md5');
    const body = new Transform({ transform(chunk: Buffer, _encoding, done) { md5.update(chunk); done(null, chunk); } });
    got.body.on('error', (err) => body.destroy(err));
    got.body.pipe(body);
    const put = await target.request({ method: 'PUT', key, headers, body, signal, operation: 'PutObject' });
    const xml = await put.body.text();
    if (put.statusCode === 412) return 'present';
    if (put.statusCode !== 200) throw new Error(`writing to ${target.bucket} failed: ${put.statusCode} ${errorCode(xml)}`);
    return { etag: String(put.headers.etag ?? ''), md5: md5.digest('hex') };
  } finally {
    got.body.destroy();
  }
}

// The copy-source condition failed: the source changed after the listing.
function preconditionFailed(xml: string): never {
  throw new Error(`the source changed while it was being moved (${errorCode(xml) || 'PreconditionFailed'}): run rebalance again`);
}

// What a copy carries over besides the x-amz-meta-* headers.
const CARRIED = ['content-type', 'content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires'];

async function tagging(b: Backend, key: string, signal: AbortSignal): Promise<string> {
  const r = await b.request({ method: 'GET', key, query: [['tagging', '']], signal, operation: 'GetObjectTagging' });
  const xml = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`reading the tags on ${b.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
  return parseXml(xml, 'Tag').entries
    .map((t) => `${encodeURIComponent(t.Key ?? '')}=${encodeURIComponent(t.Value ?? '')}`).join('&');
}

async function head(b: Backend, key: string, signal: AbortSignal): Promise<{ size: number; etag: string } | undefined> {
  const r = await b.request({ method: 'HEAD', key, signal, operation: 'HeadObject' });
  await r.body.dump();
  if (r.statusCode === 404) return undefined;
  if (r.statusCode !== 200) throw new Error(`HEAD on ${b.bucket} answered ${r.statusCode}`);
  return { size: Number(r.headers['content-length']), etag: String(r.headers.etag ?? '') };
}

async function deleteCopy(b: Backend, key: string, signal: AbortSignal): Promise<void> {
  const r = await b.request({ method: 'DELETE', key, signal, operation: 'DeleteObject' });
  const xml = await r.body.text();
  if (r.statusCode !== 204 && r.statusCode !== 200) throw new Error(`deleting on ${b.bucket} failed: ${r.statusCode} ${errorCode(xml)}`);
}

function unquote(etag: string): string {
  return etag.replace(/"/g, '');
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
