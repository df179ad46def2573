import type { IncomingMessage } from 'node:http';
import { S3Error } from './errors';
import type { AuthResult } from './auth';

// What a client asked for, worked out once from the raw request so every
// handler sees the same bucket, key and operation.
export type Operation =
  | 'ListBuckets'
  | 'GetBucketLocation' | 'HeadBucket' | 'CreateBucket' | 'DeleteBucket'
  | 'ListObjects' | 'ListObjectsV2' | 'ListObjectVersions' | 'ListMultipartUploads' | 'DeleteObjects'
  | 'GetBucketVersioning'
  | 'GetObject' | 'HeadObject' | 'PutObject' | 'CopyObject' | 'DeleteObject'
  | 'GetObjectTagging' | 'PutObjectTagging' | 'DeleteObjectTagging'
  | 'GetObjectAttributes' | 'GetObjectAcl'
  | 'CreateMultipartUpload' | 'UploadPart' | 'UploadPartCopy' | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload' | 'ListParts';

export interface S3Request {
  method: string;
  bucket: string;            // '' for the service (ListBuckets)
  key: string | undefined;   // decoded; undefined for bucket-level requests
  query: URLSearchParams;
  operation: Operation;
  /** The path as the client addressed the resource, for error bodies. */
  resource: string;
  /** Set once the client's signature checked out, when clients are configured. */
  auth?: AuthResult;
  /** The shard bucket that served it, once routed (for logs). */
  shard?: string;
  /** The backend's own id for the answer passed on (for logs): a client
   * given that answer reports this id, not the proxy's. */
  backendRequestId?: string;
}

// Query parameters that only shape or authenticate a request: they are not
// sub-resources and never make an operation unknown.
const PLAIN_PARAMS = new Set([
  'x-id', 'versionId', 'partNumber', 'uploadId',
  'response-content-type', 'response-content-language', 'response-expires',
  'response-cache-control', 'response-content-disposition', 'response-content-encoding',
]);
// A SigV2 presigned URL's: refused by the authenticator, or not passed on.
export const SIGV2_QUERY = new Set(['AWSAccessKeyId', 'Signature', 'Expires']);
const LIST_PARAMS = new Set([
  'prefix', 'delimiter', 'max-keys', 'marker', 'encoding-type', 'list-type', 'continuation-token',
  'start-after', 'fetch-owner', 'key-marker', 'version-id-marker', 'upload-id-marker', 'max-uploads',
  'optional-object-attributes',
]);

const MAX_KEY_BYTES = 1024;

export function parseS3Request(req: IncomingMessage, virtualHostDomains: readonly string[]): S3Request {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  const method = req.method ?? 'GET';

  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new S3Error('InvalidURI');
  }
  if (!path.startsWith('/')) throw new S3Error('InvalidURI');

  let bucket: string;
  let keyPart: string;
  const hostBucket = bucketFromHost(req.headers.host, virtualHostDomains);
  if (hostBucket !== undefined) {
    bucket = hostBucket;
    keyPart = path.slice(1);
  } else {
    const slash = path.indexOf('/', 1);
    bucket = slash < 0 ? path.slice(1) : path.slice(1, slash);
    keyPart = slash < 0 ? '' : path.slice(slash + 1);
  }
  const key = keyPart === '' ? undefined : keyPart;
  if (key !== undefined && Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error('KeyTooLongError');

  const operation = classify(method, bucket, key, query, req.headers);
  return { method, bucket, key, query, operation, resource: `/${bucket}${key === undefined ? '' : '/' + key}` };
}

/** The bucket a virtual-hosted request names in its Host (`<bucket>.<domain>`). */
export function bucketFromHost(host: string | undefined, domains: readonly string[]): string | undefined {
  if (!host || domains.length === 0) return undefined;
  const name = host.replace(/:\d+$/, '').toLowerCase();
  for (const d of domains) {
    if (name.endsWith('.' + d)) return name.slice(0, -d.length - 1);
  }
  return undefined;
}

function classify(method: string, bucket: string, key: string | undefined, query: URLSearchParams,
  headers: IncomingMessage['headers']): Operation {
  const has = (p: string) => query.has(p);
  const sub = query.size === 0 ? undefined : [...query.keys()].find((k) => !PLAIN_PARAMS.has(k) && !LIST_PARAMS.has(k) &&
    !SIGV2_QUERY.has(k) && !k.startsWith('X-Amz-') && !k.startsWith('x-amz-'));
  if (bucket === '') {
    if (method === 'GET' || method === 'HEAD') return 'ListBuckets';
    throw new S3Error('MethodNotAllowed');
  }
  if (key === undefined) {
    const bucketOp = BUCKET_OPS[`${method} ${sub ?? (has('list-type') && query.get('list-type') === '2' ? 'list-type=2' : '')}`];
    if (bucketOp) return bucketOp;
    throw unsupported(method, sub);
  }
  if (has('uploadId')) {
    if (method === 'PUT' && has('partNumber')) return headers['x-amz-copy-source'] ? 'UploadPartCopy' : 'UploadPart';
    if (method === 'POST') return 'CompleteMultipartUpload';
    if (method === 'DELETE') return 'AbortMultipartUpload';
    if (method === 'GET') return 'ListParts';
    throw new S3Error('MethodNotAllowed');
  }
  const objectOp = OBJECT_OPS[`${method} ${sub ?? ''}`];
  if (objectOp === 'PutObject' && headers['x-amz-copy-source']) return 'CopyObject';
  if (objectOp) return objectOp;
  throw unsupported(method, sub);
}

function unsupported(method: string, sub: string | undefined): S3Error {
  if (sub !== undefined) return new S3Error('NotImplemented', `The ${sub} sub-resource is not implemented by tempo-s3-shard.`);
  return new S3Error('MethodNotAllowed');
}

const BUCKET_OPS: Record<string, Operation> = {
  'GET ': 'ListObjects',
  'GET list-type=2': 'ListObjectsV2',
  'GET location': 'GetBucketLocation',
  'GET versions': 'ListObjectVersions',
  'GET uploads': 'ListMultipartUploads',
  'GET versioning': 'GetBucketVersioning',
  'HEAD ': 'HeadBucket',
  'PUT ': 'CreateBucket',
  'DELETE ': 'DeleteBucket',
  'POST delete': 'DeleteObjects',
};

const OBJECT_OPS: Record<string, Operation> = {
  'GET ': 'GetObject',
  'HEAD ': 'HeadObject',
  'PUT ': 'PutObject',
  'DELETE ': 'DeleteObject',
  'GET tagging': 'GetObjectTagging',
  'PUT tagging': 'PutObjectTagging',
  'DELETE tagging': 'DeleteObjectTagging',
  'GET attributes': 'GetObjectAttributes',
  'GET acl': 'GetObjectAcl',
  'POST uploads': 'CreateMultipartUpload',
};
