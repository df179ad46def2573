import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AwsChunkedDecoder, streamingKind } from './aws-chunked';
import type { ChunkSignatureContext } from './aws-chunked';
import type { Backend, BackendRequest } from './backend';
import { S3Error } from './errors';
import type { S3Request } from './s3-request';
import type { VirtualBucket } from './virtual-bucket';
import { encodePath } from './sigv4';
import { channels } from './events';

// The one path most requests take: to the key's owner, re-signed, the body
// piped through, the answer piped back.

// Never forwarded: hop-by-hop headers, the client's own signature and
// everything the re-signing or the body decoding replaces.
const DROP_REQUEST_HEADERS = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'expect', 'authorization', 'x-amz-date', 'x-amz-security-token',
  'x-amz-content-sha256', 'x-amz-decoded-content-length', 'x-amz-trailer', 'content-length',
  'content-encoding', 'x-amz-copy-source',
]);

const DROP_RESPONSE_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

// Query parameters that belong to the client's presigned URL or SDK routing,
// not to the operation.
function forwardQuery(query: URLSearchParams): [string, string][] {
  return [...query].filter(([k]) => k !== 'x-id' && !/^x-amz-/i.test(k));
}

export function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
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
  body: Readable | null;
  length: number;
  hash: string;
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;

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
    req.pipe(decoder);
    if (length === 0) {
      // Nothing is held back from an empty payload: the framing (and any
      // trailing checksum) must be verified before the empty PUT goes out.
      for await (const _ of decoder) { /* drained; an error throws */ }
      return { body: null, length, hash: 'UNSIGNED-PAYLOAD' };
    }
    return { body: decoder, length, hash: 'UNSIGNED-PAYLOAD' };
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

export async function backendRequest(req: IncomingMessage, s3: S3Request, signal: AbortSignal): Promise<BackendRequest> {
  const headers = forwardHeaders(req.headers);
  const out: BackendRequest = { method: s3.method, key: s3.key, query: forwardQuery(s3.query), headers, signal, operation: s3.operation };
  if (BODY_METHODS.has(s3.method)) {
    const payload = await requestPayload(req, s3.auth?.chunk);
    headers['content-length'] = String(payload.length);
    out.body = payload.body;
    out.payloadHash = payload.hash;
  }
  return out;
}

export async function forward(req: IncomingMessage, res: ServerResponse, s3: S3Request, vb: VirtualBucket,
  signal: AbortSignal): Promise<void> {
  const backend = vb.owner(s3.key!);
  const br = await backendRequest(req, s3, signal);
  const upstream = await backend.request(br);
  await respond(res, upstream, s3, vb, backend, req);
}

const WRITES = new Set(['PutObject', 'CompleteMultipartUpload', 'CopyObject']);

// Answers whose XML names the backend bucket: the client must see its own.
const REWRITE_OK_BODY = new Set(['CreateMultipartUpload', 'CompleteMultipartUpload', 'ListParts']);
const MAX_REWRITTEN_BODY = 4 * 1024 * 1024;

export async function respond(res: ServerResponse, upstream: Dispatcher.ResponseData, s3: S3Request,
  vb: VirtualBucket, backend: Backend, req: IncomingMessage): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upstream.headers)) {
    if (value !== undefined && !DROP_RESPONSE_HEADERS.has(name)) headers[name] = value;
  }
  if (upstream.statusCode === 200 && WRITES.has(s3.operation)) channels.objectWritten.publish({ shard: backend.bucket });
  const rewrite = upstream.statusCode >= 300 || REWRITE_OK_BODY.has(s3.operation);
  if (s3.method === 'HEAD' || !rewrite) {
    res.writeHead(upstream.statusCode, headers);
    if (s3.method === 'HEAD') {
      await upstream.body.dump();
      res.end();
      return;
    }
    await pipe(upstream.body, res, backend.bucket);
    return;
  }
  const text = (await readCapped(upstream.body, MAX_REWRITTEN_BODY)).toString('utf8');
  const body = Buffer.from(rewriteBucketNames(text, backend, vb, s3, req));
  delete headers['content-length'];
  headers['content-length'] = String(body.length);
  res.writeHead(upstream.statusCode, headers);
  res.end(body);
}

export function rewriteBucketNames(xml: string, backend: Backend, vb: VirtualBucket, s3: S3Request,
  req: IncomingMessage): string {
  const shard = backend.bucket;
  return xml
    .split(`<Bucket>${shard}</Bucket>`).join(`<Bucket>${vb.name}</Bucket>`)
    .split(`<BucketName>${shard}</BucketName>`).join(`<BucketName>${vb.name}</BucketName>`)
    .split(`<Resource>/${shard}/`).join(`<Resource>/${vb.name}/`)
    .split(`<Resource>/${shard}</Resource>`).join(`<Resource>/${vb.name}</Resource>`)
    .replace(/<Location>[^<]*<\/Location>/, () =>
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
// and releases the backend stream when the client goes away.
function pipe(from: Readable, to: ServerResponse, shard: string): Promise<void> {
  let bytes = 0;
  from.on('data', (chunk: Buffer) => { bytes += chunk.length; });
  to.once('close', () => channels.backendBytesReceived.publish({ shard, bytes }));
  return new Promise((resolve, reject) => {
    const onClose = () => {
      if (!to.writableFinished) from.destroy();
      resolve();
    };
    to.once('close', onClose);
    from.once('error', (err) => {
      to.off('close', onClose);
      reject(err);
    });
    from.once('end', () => {
      to.off('close', onClose);
      resolve();
    });
    from.pipe(to);
  });
}
