import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AwsChunkedDecoder, AwsChunkedEncoder, streamingKind } from './aws-chunked';
import type { ChunkSignatureContext } from './aws-chunked';
import { brokenAnswer } from './backend';
import type { Backend, BackendRequest } from './backend';
import { S3Error } from './errors';
import { SIGV2_QUERY } from './s3-request';
import type { Operation, S3Request } from './s3-request';
import type { VirtualBucket } from './virtual-bucket';
import { encodePath } from './sigv4';
import { channels } from './events';
import type { Abortable } from './client-signal';

// The one path most requests take: to the key's owner, re-signed, the body
// piped through, the answer piped back.

/** Headers of one connection, never passed on to another. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

// Never forwarded: hop-by-hop headers, the client's own signature and
// everything the re-signing or the body decoding replaces.
const DROP_REQUEST_HEADERS = new Set([
  ...HOP_BY_HOP, 'host', 'proxy-authorization', 'expect', 'authorization', 'x-amz-date', 'x-amz-security-token',
  'x-amz-content-sha256', 'x-amz-decoded-content-length', 'x-amz-trailer', 'content-length',
  'content-encoding', 'x-amz-copy-source',
]);

// Query parameters of the operation: not SDK routing (`x-id`), nor a presigned
// URL's signature (V4 or V2) or headers (see queryHeaders).
function forwardQuery(query: URLSearchParams): [string, string][] {
  // A repeated parameter counts once, as S3 reads it: sent twice it would
  // not match the signature, which covers the first value only.
  const seen = new Set<string>();
  return [...query].filter(([k]) => {
    if (k === 'x-id' || /^x-amz-/i.test(k) || SIGV2_QUERY.has(k) || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// A presigned URL's signature; its other x-amz-* parameters are headers.
const PRESIGN_QUERY = new Set([
  'x-amz-algorithm', 'x-amz-credential', 'x-amz-date', 'x-amz-expires', 'x-amz-signedheaders', 'x-amz-signature',
  'x-amz-security-token',
]);

// The AWS SDK for JavaScript presigns a PUT with the checksum of an empty
// body; MinIO ignores it there, as it must for the URL to work.
const IGNORED_IN_QUERY = /^x-amz-(checksum-|sdk-checksum-algorithm$)/;

/** Adds the headers a presigned URL carries in its query (`x-amz-meta-*`,
 * `x-amz-tagging`, ...), which S3 reads as headers, unless sent as headers too. */
function queryHeaders(query: URLSearchParams, headers: Record<string, string>): void {
  for (const [key, value] of query) {
    const name = key.toLowerCase();
    if (!name.startsWith('x-amz-') || PRESIGN_QUERY.has(name) || DROP_REQUEST_HEADERS.has(name) ||
      IGNORED_IN_QUERY.test(name) || name in headers) continue;
    // As a header's bytes reach us: one latin1 character each.
    headers[name] = Buffer.from(value, 'utf8').toString('latin1');
  }
}

export function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || DROP_REQUEST_HEADERS.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const encoding = headers['content-encoding'];
  if (encoding) {
    // `aws-chunked` describes the framing we remove; any real encoding stays.
    const rest = encoding.split(',').map((s) => s.trim()).filter((s) => s && s.toLowerCase() !== 'aws-chunked');
    if (rest.length) out['content-encoding'] = rest.join(', ');
  }
  return out;
}

interface Payload {
  /** The decoded body; null when empty. */
  body: Readable | null;
  length: number;
  hash: string;
  /** An aws-chunked body's decoder, which holds its trailers once it has ended. */
  decoder?: AwsChunkedDecoder;
}

// MinIO reads the hex digits in either case.
const HEX_SHA256 = /^[0-9a-f]{64}$/i;

export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

// How the client framed its body, read from `x-amz-content-sha256` (minio-go
// before v7.3 sends aws-chunked bodies without `Content-Encoding`).
export async function requestPayload(req: IncomingMessage, verify?: ChunkSignatureContext): Promise<Payload> {
  const sha = header(req, 'x-amz-content-sha256');
  const kind = streamingKind(sha);
  if (kind) {
    const decoded = header(req, 'x-amz-decoded-content-length');
    if (decoded === undefined || !/^\d+$/.test(decoded)) throw new S3Error('MissingContentLength');
    const length = Number(decoded);
    const decoder = new AwsChunkedDecoder({ kind, decodedLength: length, trailer: header(req, 'x-amz-trailer'), verify });
    req.on('error', (err) => decoder.destroy(err));
    // Whoever reads the decoder sees its error; but a backend may answer
    // (and its reader let go) before a bad frame arrives, and an error
    // nobody listens for would take the whole process down.
    decoder.on('error', () => {});
    req.pipe(decoder);
    if (length === 0) {
      // Nothing is held back from an empty payload: the framing (and any
      // trailing checksum) must be verified before the empty PUT goes out.
      for await (const _ of decoder) { /* drained; an error throws */ }
      return { body: null, length, hash: 'UNSIGNED-PAYLOAD', decoder };
    }
    return { body: decoder, length, hash: 'UNSIGNED-PAYLOAD', decoder };
  }
  if (sha !== undefined && sha !== 'UNSIGNED-PAYLOAD' && !HEX_SHA256.test(sha)) {
    throw new S3Error('InvalidArgument', `Unsupported x-amz-content-sha256 value.`);
  }
  const cl = header(req, 'content-length');
  if (cl === undefined) {
    if (req.headers['transfer-encoding']) throw new S3Error('MissingContentLength');
    return { body: null, length: 0, hash: sha ?? 'UNSIGNED-PAYLOAD' };
  }
  const length = Number(cl);
  return { body: length === 0 ? null : req, length, hash: sha ?? 'UNSIGNED-PAYLOAD' };
}

const BODY_METHODS = new Set(['PUT', 'POST']);

export async function backendRequest(req: IncomingMessage, s3: S3Request, signal: Abortable): Promise<BackendRequest> {
  const headers = forwardHeaders(req.headers);
  if (s3.query.size > 0) queryHeaders(s3.query, headers);
  const out: BackendRequest = { method: s3.method, key: s3.key, query: forwardQuery(s3.query), headers, signal, operation: s3.operation };
  if (BODY_METHODS.has(s3.method)) {
    const payload = await requestPayload(req, s3.auth?.chunk);
    headers['content-length'] = String(payload.length);
    out.body = payload.body;
    out.payloadHash = payload.hash;
    if (payload.decoder?.checksumAlgorithm) withTrailingChecksum(out, payload, payload.decoder);
  }
  return out;
}

/** Frames the decoded body again, its verified checksum last (see AwsChunkedEncoder). */
function withTrailingChecksum(out: BackendRequest, payload: Payload, decoder: AwsChunkedDecoder): void {
  const algorithm = decoder.checksumAlgorithm!;
  const framed = new AwsChunkedEncoder(payload.length, algorithm, () => decoder.checksumValue());
  // As the decoder's: the backend may let go of the body before it fails.
  framed.on('error', () => {});
  // pipeline, not pipe: the decoder may have failed already, and a pipe from
  // a failed stream would leave the backend waiting for the rest.
  if (payload.body) pipeline(payload.body, framed, () => {});
  else framed.end();
  const headers = out.headers!;
  headers['content-encoding'] = headers['content-encoding'] ? `aws-chunked,${headers['content-encoding']}` : 'aws-chunked';
  headers['x-amz-decoded-content-length'] = String(payload.length);
  headers['x-amz-trailer'] = `x-amz-checksum-${algorithm}`;
  headers['content-length'] = String(framed.length);
  out.body = framed;
  out.payloadHash = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
}

// After a ring change an object may still sit where an earlier ring put it,
// until a rebalance has moved it; writes always go to the current owner.
const ON_EXISTING = new Set<Operation>([
  'GetObject', 'HeadObject', 'GetObjectTagging', 'PutObjectTagging', 'DeleteObjectTagging', 'GetObjectAttributes',
  'GetObjectAcl',
]);
// A multipart upload completes on the shard it began on.
const ON_UPLOAD = new Set<Operation>(['UploadPart', 'CompleteMultipartUpload', 'AbortMultipartUpload', 'ListParts']);
const MAX_TAGGING_BODY = 64 * 1024;

export async function forward(req: IncomingMessage, res: ServerResponse, s3: S3Request, vb: VirtualBucket,
  signal: Abortable, answerHeaders: Record<string, string>): Promise<void> {
  const owners = vb.owners(s3.key!);
  const br = await backendRequest(req, s3, signal);
  let backend = owners[0];
  let upstream: Dispatcher.ResponseData | undefined;
  if (owners.length > 1 && s3.operation === 'DeleteObject') {
    await deleteAtEarlierOwners(owners, br);
  } else if (owners.length > 1 && ON_UPLOAD.has(s3.operation)) {
    backend = await uploadHolder(owners, s3.key!, s3.query.get('uploadId')!, signal);
    if (s3.operation === 'CompleteMultipartUpload' && isConditional(br)) await conditionElsewhere(owners, backend, br);
  } else if (owners.length > 1 && s3.operation === 'PutObject' && isConditional(br)) {
    await conditionElsewhere(owners, backend, br);
  } else if (owners.length > 1 && ON_EXISTING.has(s3.operation)) {
    // A tagging document is small: read once, it can go to the next owner too.
    if (Number(br.headers!['content-length'] ?? 0) > MAX_TAGGING_BODY) throw new S3Error('EntityTooLarge');
    if (br.body) br.body = await readCapped(br.body as Readable, MAX_TAGGING_BODY);
    ({ backend, upstream } = await firstHolder(owners, br));
  }
  upstream ??= await backend.request(br);
  const stored = owners.length > 1 && STORES.has(s3.operation)
    ? (etag: string) => removeOlderCopies(owners.filter((b) => b !== backend), backend, s3.key!, etag) : undefined;
  await respond(res, upstream, s3, vb, backend, req, answerHeaders, stored);
}

const STORES = new Set<Operation>(['PutObject', 'CompleteMultipartUpload']);

// Only the backend's own word that the object is not there moves a read on to
// an earlier owner; any other answer, a failure included, is the answer.
const ABSENT = new Set(['NoSuchKey', 'NoSuchVersion']);

/** The S3 error code of a 404 answer, whose body it reads; undefined, the
 * body untouched, for any other answer. */
export async function notFoundCode(upstream: Dispatcher.ResponseData, method: string): Promise<string | undefined> {
  if (upstream.statusCode !== 404) return undefined;
  if (method === 'HEAD') {
    // A HEAD answer has no body to say why; S3 answers a missing key so.
    await upstream.body.dump();
    return 'NoSuchKey';
  }
  const text = (await readCapped(upstream.body, 64 * 1024)).toString('utf8');
  return /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? '';
}

export function isAbsent(code: string | undefined): boolean {
  return code !== undefined && ABSENT.has(code);
}

/** A 404 other than absence, its body already read. The client's virtual
 * bucket exists, so a shard's missing bucket is the proxy's failure. */
export function notFoundError(code: string, backend: Backend): S3Error {
  if (code === 'NoSuchUpload') return new S3Error('NoSuchUpload');
  return new S3Error('ServiceUnavailable', `Shard bucket ${backend.bucket} answered 404 ${code}.`);
}

/** Sends a body-less (or buffered) request to each owner in turn until one
 * has the object. When none has it the current owner is asked again: a
 * rebalance (copy, then delete the source) may have moved the object there
 * while the earlier owners were asked. */
export async function firstHolder(owners: Backend[], br: BackendRequest):
  Promise<{ backend: Backend; upstream: Dispatcher.ResponseData }> {
  const order = owners.length > 1 ? [...owners, owners[0]] : owners;
  for (let i = 0; ; i++) {
    const backend = order[i];
    const upstream = await backend.request(br);
    if (i === order.length - 1) return { backend, upstream };
    const code = await notFoundCode(upstream, br.method);
    if (code === undefined) return { backend, upstream };
    if (!isAbsent(code)) throw notFoundError(code, backend);
  }
}

function isConditional(br: BackendRequest): boolean {
  return br.headers!['if-match'] !== undefined || br.headers!['if-none-match'] !== undefined;
}

/** A conditional write is about the object readers see, which may sit on
 * another owner than the one the write goes to (`writtenAt`): where an
 * earlier ring put it, or, for an upload begun before the ring change, at
 * the current owner. `writtenAt` checks a copy of its own; a copy only
 * another owner holds is checked here. */
async function conditionElsewhere(owners: Backend[], writtenAt: Backend, br: BackendRequest): Promise<void> {
  const { backend, upstream } = await firstHolder(owners, { method: 'HEAD', key: br.key, signal: br.signal, operation: 'HeadObject' });
  await upstream.body.dump();
  if (upstream.statusCode >= 500) throw new S3Error('ServiceUnavailable', `Shard bucket ${backend.bucket} answered ${upstream.statusCode}.`);
  if (backend === writtenAt || upstream.statusCode !== 200) return;
  const etag = String(upstream.headers.etag ?? '');
  const ifNoneMatch = br.headers!['if-none-match'];
  const ifMatch = br.headers!['if-match'];
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, etag)) throw new S3Error('PreconditionFailed');
  if (ifMatch !== undefined) {
    if (!etagMatches(ifMatch, etag)) throw new S3Error('PreconditionFailed');
    // It held: `writtenAt`, whose own copy (if any) readers do not see, writes.
    delete br.headers!['if-match'];
  }
}

function etagMatches(condition: string, etag: string): boolean {
  const bare = (s: string) => s.trim().replace(/^W\//, '').replace(/"/g, '');
  return condition.split(',').some((c) => c.trim() === '*' || bare(c) === bare(etag));
}

// The earlier owners first, the current one after them: a rebalance copies to
// the current owner and then checks that its source still exists, so it
// either sees this delete or its copy is removed by it.
async function deleteAtEarlierOwners(owners: Backend[], br: BackendRequest): Promise<void> {
  await Promise.all(owners.slice(1).map(async (b) => {
    const r = await b.request(br);
    await r.body.dump();
    if (r.statusCode >= 300) throw new S3Error('ServiceUnavailable', `Shard bucket ${b.bucket} answered ${r.statusCode} to a delete.`);
  }));
}

/** After a ring change, a key stored anew may still have an older copy where
 * another ring put it. Left there, it would be served again if the change
 * were undone before its rebalance finished, and that rebalance would keep
 * it over the newer one; so it is removed before the client hears that its
 * write is stored, even if the client has gone by then. A copy the same as
 * the one written (ETag and attributes) stays: rebalance reads a source that
 * vanished while it moved the key as the client's delete (see rebalance.ts),
 * which a removal here after an identical write would fake. The write is
 * stored whatever happens here, so a failure is reported, not answered: a
 * client told otherwise could not complete its upload again, or would find
 * its own write failing the condition it retries with. */
export async function removeOlderCopies(others: Backend[], writtenAt: Backend, key: string, etag: string): Promise<void> {
  let written: Promise<string> | undefined;
  await Promise.all(others.map(async (b) => {
    try {
      const found = await b.request({ method: 'HEAD', key, operation: 'HeadObject' });
      await found.body.dump();
      if (found.statusCode === 404) return;
      if (found.statusCode !== 200) throw new Error(`HEAD answered ${found.statusCode}`);
      if (unquoted(String(found.headers.etag ?? '')) === unquoted(etag)) {
        written ??= headAttributes(writtenAt, key);
        if (objectAttributes(found.headers) === await written) return;
      }
      const removed = await b.request({ method: 'DELETE', key, operation: 'DeleteObject' });
      await removed.body.dump();
      if (removed.statusCode >= 300) throw new Error(`DELETE answered ${removed.statusCode}`);
    } catch (err) {
      channels.olderCopyLeft.publish({ shard: b.bucket, key, error: (err as Error).message });
    }
  }));
}

async function headAttributes(b: Backend, key: string): Promise<string> {
  const r = await b.request({ method: 'HEAD', key, operation: 'HeadObject' });
  await r.body.dump();
  if (r.statusCode !== 200) throw new Error(`HEAD of the copy written on ${b.bucket} answered ${r.statusCode}`);
  return objectAttributes(r.headers);
}

/** The headers an object is stored with besides its bytes and checksums:
 * what a copy carries over, and, with the tag count, what tells two copies
 * with one ETag apart. */
export function isObjectHeader(name: string): boolean {
  return name.startsWith('x-amz-meta-') || CONTENT_HEADERS.has(name);
}
const CONTENT_HEADERS = new Set(['content-type', 'content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires']);

/** An object's attributes (the headers above and its tag count) as one
 * string: two copies with the same ETag and these are the same write. */
export function objectAttributes(headers: Record<string, string | string[] | undefined>): string {
  return Object.keys(headers).filter((n) => isObjectHeader(n) || n === 'x-amz-tagging-count').sort()
    .map((n) => `${n}: ${String(headers[n])}`).join('\n');
}

export function unquoted(etag: string): string {
  return etag.replace(/&quot;|&#34;|"/g, '');
}

/** The owner that knows the upload. A part's body can be sent only once, so
 * each owner is asked about the upload (a ListParts of one part) first. */
export async function uploadHolder(owners: Backend[], key: string, uploadId: string, signal: Abortable): Promise<Backend> {
  if (owners.length === 1) return owners[0];
  for (const b of owners) {
    const r = await b.request({
      method: 'GET', key, query: [['uploadId', uploadId], ['max-parts', '1']], signal, operation: 'ListParts',
    });
    const code = await notFoundCode(r, 'GET');
    if (code === 'NoSuchUpload') continue;
    if (code !== undefined) throw notFoundError(code, b);
    await r.body.dump();
    if (r.statusCode !== 200) throw new S3Error('ServiceUnavailable', `Shard bucket ${b.bucket} answered ${r.statusCode} about an upload.`);
    return b;
  }
  // No owner knows it: the current one tells the client so.
  return owners[0];
}

const WRITES = new Set(['PutObject', 'CompleteMultipartUpload', 'CopyObject']);

// Answers whose XML names the backend bucket: the client must see its own.
const REWRITE_OK_BODY = new Set(['CreateMultipartUpload', 'CompleteMultipartUpload', 'ListParts']);
const MAX_REWRITTEN_BODY = 4 * 1024 * 1024;

/** Passes a backend's answer on, its headers added to `headers` (the
 * backend's own request id and server name win, as its error body names them).
 * `stored` learns the ETag of an object the answer says was stored, before
 * the client does. */
export async function respond(res: ServerResponse, upstream: Dispatcher.ResponseData, s3: S3Request,
  vb: VirtualBucket, backend: Backend, req: IncomingMessage,
  headers: Record<string, string | string[]> = {}, stored?: (etag: string) => Promise<void>): Promise<void> {
  s3.shard = backend.bucket;
  const backendId = upstream.headers['x-amz-request-id'];
  if (typeof backendId === 'string') s3.backendRequestId = backendId;
  for (const name in upstream.headers) {
    const value = upstream.headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  if (upstream.statusCode === 200 && WRITES.has(s3.operation)) channels.objectWritten.publish({ shard: backend.bucket });
  if (upstream.statusCode === 404 && s3.method === 'HEAD' &&
    (upstream.headers['x-minio-error-code'] === 'NoSuchBucket' || backend.bucketMissing)) {
    await upstream.body.dump();
    throw notFoundError('NoSuchBucket', backend);
  }
  // A copy or a completion may answer 200 and fail in the body: it is read first.
  const rewrite = upstream.statusCode >= 300 || REWRITE_OK_BODY.has(s3.operation) || stored !== undefined;
  if (s3.method === 'HEAD' || !rewrite) {
    res.writeHead(upstream.statusCode, headers);
    if (s3.method === 'HEAD') {
      await upstream.body.dump();
      res.end();
      return;
    }
    await pipe(upstream.body, res, (bytes) => channels.backendBytesReceived.publish({ shard: backend.bucket, bytes }))
      .catch((err: unknown) => { throw brokenAnswer(err, backend.bucket); });
    return;
  }
  const text = (await readCapped(upstream.body, MAX_REWRITTEN_BODY)).toString('utf8');
  if (upstream.statusCode === 404 && text.includes('<Code>NoSuchBucket</Code>')) throw notFoundError('NoSuchBucket', backend);
  if (stored && upstream.statusCode === 200 && !text.includes('<Error>')) {
    await stored(String(upstream.headers.etag ?? /<ETag>([^<]*)<\/ETag>/.exec(text)?.[1] ?? ''));
  }
  const body = Buffer.from(rewriteBucketNames(text, backend, vb, s3, req));
  headers['content-length'] = String(body.length);
  res.writeHead(upstream.statusCode, headers);
  res.end(body);
}

/** The client sees its virtual bucket where the backend named a shard
 * bucket: the one that answered, or another of the virtual bucket's (the
 * source of a copy between shards). */
export function rewriteBucketNames(xml: string, backend: Backend, vb: VirtualBucket, s3: S3Request,
  req: IncomingMessage): string {
  let out = xml;
  for (const shard of new Set([backend.bucket, ...vb.backends.map((b) => b.bucket)])) {
    if (!out.includes(shard)) continue;
    out = out
      .split(`<Bucket>${shard}</Bucket>`).join(`<Bucket>${vb.name}</Bucket>`)
      .split(`<BucketName>${shard}</BucketName>`).join(`<BucketName>${vb.name}</BucketName>`)
      .split(`<Resource>/${shard}/`).join(`<Resource>/${vb.name}/`)
      .split(`<Resource>/${shard}</Resource>`).join(`<Resource>/${vb.name}</Resource>`);
  }
  return out.replace(/<Location>[^<]*<\/Location>/, () =>
    `<Location>http://${req.headers.host ?? 'localhost'}/${vb.name}/${encodePath(s3.key ?? '')}</Location>`);
}

export async function readCapped(body: Readable | NodeJS.ReadableStream, cap: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > cap) throw new S3Error('BadGateway', 'The backend answer is larger than expected.');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

// Piping by hand keeps backpressure (a slow client slows the backend read)
// and releases the backend stream when the client goes away. `received`
// learns how many bytes came through.
export function pipe(from: Readable, to: ServerResponse, received?: (bytes: number) => void): Promise<void> {
  let bytes = 0;
  if (received) from.on('data', (chunk: Buffer) => { bytes += chunk.length; });
  // Settled by whichever comes first; a promise settles once, so the later
  // events need no listeners taken off.
  return new Promise((resolve, reject) => {
    to.once('close', () => {
      received?.(bytes);
      if (!to.writableFinished) from.destroy();
      resolve();
    });
    from.once('error', reject);
    from.once('end', resolve);
    from.pipe(to);
  });
}
