import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Backend } from './backend';
import { S3Error } from './errors';
import { decodeCopySource } from './copy-source';
import type { CopySource } from './copy-source';
import { backendRequest, isAbsent, isObjectHeader, notFoundCode, notFoundError, readCapped, removeOlderCopies, respond, uploadHolder } from './forward';
import type { S3Request } from './s3-request';
import type { VirtualBucket } from './virtual-bucket';
import { sendXml } from './bucket-ops';
import { channels } from './events';

// CopyObject and UploadPartCopy name a source in a virtual bucket. When the
// source's shard shares an endpoint and credentials with the target's, the
// backend copies server-side; otherwise the proxy streams a GET into a PUT.

const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';

// Conditional copy headers become the source GET's own conditions.
const SOURCE_CONDITIONS: Record<string, string> = {
  'x-amz-copy-source-if-match': 'if-match',
  'x-amz-copy-source-if-none-match': 'if-none-match',
  'x-amz-copy-source-if-modified-since': 'if-modified-since',
  'x-amz-copy-source-if-unmodified-since': 'if-unmodified-since',
};


export async function copy(req: IncomingMessage, res: ServerResponse, s3: S3Request,
  buckets: ReadonlyMap<string, VirtualBucket>, vb: VirtualBucket, signal: AbortSignal): Promise<void> {
  const src = decodeCopySource(String(req.headers['x-amz-copy-source']));
  const srcVb = buckets.get(src.bucket);
  if (!srcVb) throw new S3Error('NoSuchBucket');
  const owners = vb.owners(s3.key!);
  const target = s3.operation === 'UploadPartCopy'
    ? await uploadHolder(owners, s3.key!, s3.query.get('uploadId')!, signal)
    : owners[0];
  const br = await backendRequest(req, s3, signal);
  const stored = s3.operation === 'CopyObject' && owners.length > 1
    ? (etag: string) => removeOlderCopies(owners.slice(1), target, s3.key!, etag) : undefined;
  // The source may still sit where an earlier ring put it. As for reads, the
  // current owner is asked again when no owner had it: a rebalance may have
  // moved it there meanwhile.
  const sources = srcVb.owners(src.key);
  const order = sources.length > 1 ? [...sources, sources[0]] : sources;
  for (const [i, source] of order.entries()) {
    const last = i === order.length - 1;
    if (source.sharesStorageWith(target)) {
      br.headers!['x-amz-copy-source'] = source.copySource(src.key) +
        (src.versionId ? `?versionId=${encodeURIComponent(src.versionId)}` : '');
      const upstream = await target.request(br);
      if (!last) {
        const code = await notFoundCode(upstream, br.method);
        if (isAbsent(code)) continue;
        if (code !== undefined) throw notFoundError(code, target);
      }
      await respond(res, upstream, s3, vb, target, req, {}, stored);
      return;
    }
    if (await streamedCopy(req, res, s3, vb, src, source, target, signal, last, stored)) return;
  }
}

const RANGE_FORM = 'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are ' +
  'the zero-based offsets of the first and last bytes to copy';

/** UploadPartCopy's `x-amz-copy-source-range`: `bytes=first-last`, nothing else. */
function copySourceRange(req: IncomingMessage, s3: S3Request): { first: number; last: number } | undefined {
  const header = req.headers['x-amz-copy-source-range'];
  if (s3.operation !== 'UploadPartCopy' || typeof header !== 'string') return undefined;
  const m = /^bytes=(\d+)-(\d+)$/.exec(header.trim());
  if (!m || Number(m[1]) > Number(m[2])) throw new S3Error('InvalidArgument', RANGE_FORM);
  return { first: Number(m[1]), last: Number(m[2]) };
}

/** Whether the source answered exactly the range asked for: a backend clamps
 * a range that runs past the end, where a part copy must fail. */
function isWholeRange(got: Dispatcher.ResponseData, range: { first: number; last: number }): boolean {
  if (got.statusCode === 200) return range.first === 0 && Number(got.headers['content-length']) === range.last + 1;
  const m = /^bytes (\d+)-(\d+)\//.exec(String(got.headers['content-range'] ?? ''));
  return m !== null && Number(m[1]) === range.first && Number(m[2]) === range.last;
}

/** False, having answered nothing, when the source is not at `source` and
 * another owner is still to be asked. Errors are the ones a server-side copy
 * gets from the backend. */
async function streamedCopy(req: IncomingMessage, res: ServerResponse, s3: S3Request, vb: VirtualBucket, src: CopySource,
  source: Backend, target: Backend, signal: AbortSignal, last: boolean,
  stored?: (etag: string) => Promise<void>): Promise<boolean> {
  const getHeaders: Record<string, string> = {};
  for (const [from, to] of Object.entries(SOURCE_CONDITIONS)) {
    const v = req.headers[from];
    if (typeof v === 'string') getHeaders[to] = v;
  }
  const range = copySourceRange(req, s3);
  if (range) getHeaders.range = `bytes=${range.first}-${range.last}`;
  const got = await source.request({
    method: 'GET', key: src.key, headers: getHeaders, signal,
    query: src.versionId ? [['versionId', src.versionId]] : [],
  });
  const code = await notFoundCode(got, 'GET');
  if (isAbsent(code)) {
    if (!last) return false;
    throw new S3Error(code === 'NoSuchVersion' ? 'NoSuchVersion' : 'NoSuchKey');
  }
  if (code !== undefined) throw notFoundError(code, source);
  if (got.statusCode === 304 || got.statusCode === 412 || got.statusCode === 416) {
    await got.body.dump();
    throw new S3Error(got.statusCode === 416 ? 'InvalidRange' : 'PreconditionFailed');
  }
  if (got.statusCode >= 400 && got.statusCode < 500) {
    await respond(res, got, s3, vb, source, req);
    return true;
  }
  if (got.statusCode !== 200 && got.statusCode !== 206) {
    await got.body.dump();
    throw new S3Error('ServiceUnavailable', `Copy source shard ${source.bucket} answered ${got.statusCode}.`);
  }
  if (range && !isWholeRange(got, range)) {
    await got.body.dump();
    throw new S3Error('InvalidArgument', 'Range specified is not valid for source object');
  }

  const headers: Record<string, string> = { 'content-length': String(got.headers['content-length']) };
  const replaceMetadata = String(req.headers['x-amz-metadata-directive'] ?? 'COPY').toUpperCase() === 'REPLACE';
  const carried = replaceMetadata ? req.headers : got.headers;
  for (const [name, value] of Object.entries(carried)) {
    if (typeof value === 'string' && isObjectHeader(name)) headers[name] = value;
  }
  for (const name of ['x-amz-storage-class', 'x-amz-server-side-encryption']) {
    const v = req.headers[name];
    if (typeof v === 'string') headers[name] = v;
  }
  const query: [string, string][] = [];
  if (s3.operation === 'UploadPartCopy') {
    query.push(['partNumber', s3.query.get('partNumber')!], ['uploadId', s3.query.get('uploadId')!]);
  } else {
    const tagging = await sourceTagging(req, src, source, signal);
    if (tagging) headers['x-amz-tagging'] = tagging;
  }
  const put = await target.request({ method: 'PUT', key: s3.key, query, headers, body: got.body, signal });
  if (put.statusCode !== 200) {
    await respond(res, put, s3, vb, target, req);
    return true;
  }
  await put.body.dump();
  if (s3.operation === 'CopyObject') channels.objectWritten.publish({ shard: target.bucket });
  const etag = String(put.headers.etag ?? '');
  await stored?.(etag);
  const element = s3.operation === 'UploadPartCopy' ? 'CopyPartResult' : 'CopyObjectResult';
  sendXml(res, 200, `<${element} xmlns="${XMLNS}"><LastModified>${new Date().toISOString()}</LastModified>` +
    `<ETag>${etag.replace(/"/g, '&quot;')}</ETag></${element}>`);
  return true;
}

// S3 copies the source's tags unless told to replace them with the request's.
async function sourceTagging(req: IncomingMessage, src: CopySource, source: Backend,
  signal: AbortSignal): Promise<string | undefined> {
  if (String(req.headers['x-amz-tagging-directive'] ?? 'COPY').toUpperCase() === 'REPLACE') {
    const t = req.headers['x-amz-tagging'];
    return typeof t === 'string' ? t : undefined;
  }
  const r = await source.request({ method: 'GET', key: src.key, query: [['tagging', '']], signal });
  const xml = (await readCapped(r.body, 64 * 1024)).toString('utf8');
  if (r.statusCode !== 200) throw new S3Error('ServiceUnavailable', `Copy source shard ${source.bucket} answered ${r.statusCode} for tags.`);
  const pairs = [...xml.matchAll(/<Tag>\s*<Key>([^<]*)<\/Key>\s*<Value>([^<]*)<\/Value>\s*<\/Tag>/g)]
    .map((m) => `${encodeURIComponent(unescapeXml(m[1]))}=${encodeURIComponent(unescapeXml(m[2]))}`);
  return pairs.length ? pairs.join('&') : undefined;
}

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-fA-F]+));/g, (_, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(parseInt(hex, 16));
    return ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' } as Record<string, string>)[name];
  });
}
