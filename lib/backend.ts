import { Pool, errors as undiciErrors } from 'undici';
import type { Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import type { Limits, ShardConfig } from './config';
import { S3Error, isS3Error } from './errors';
import { encodePath, encodeQuery, sign } from './sigv4';
import { channels } from './events';
import type { Abortable } from './client-signal';

export interface BackendRequest {
  method: string;
  key?: string;                          // absent for bucket-level requests
  query?: Iterable<[string, string]>;
  headers?: Record<string, string>;      // lower-case names, already filtered
  body?: Readable | Buffer | string | null;
  payloadHash?: string;                  // defaults to the empty body's hash / UNSIGNED-PAYLOAD
  signal?: Abortable;
  operation?: string;                    // for metrics: the client's operation this serves
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export interface PoolOptions {
  connections: number;
  connectTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
}

export const DEFAULT_POOL_OPTIONS: PoolOptions = {
  connections: 256,
  connectTimeout: 5_000,
  // CompleteMultipartUpload of a large object may think for a while before
  // its first byte; a stalled backend still fails within this bound.
  headersTimeout: 120_000,
  bodyTimeout: 60_000,
};

export function poolOptions(limits: Limits): PoolOptions {
  return { ...DEFAULT_POOL_OPTIONS, headersTimeout: limits.backendTimeoutMs, bodyTimeout: limits.backendIdleTimeoutMs };
}

// One undici pool per origin, shared by every shard bucket that lives there.
export class Pools {
  private readonly pools = new Map<string, Pool>();
  constructor(private readonly options: PoolOptions = DEFAULT_POOL_OPTIONS) {}

  get(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: this.options.connections,
        connect: { timeout: this.options.connectTimeout },
        headersTimeout: this.options.headersTimeout,
        bodyTimeout: this.options.bodyTimeout,
        keepAliveTimeout: 10_000,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}

// A shard: one backend bucket, reached through its endpoint's pool, every
// request re-signed with the shard's own region and credentials.
export class Backend {
  readonly bucket: string;
  /** The readiness probe last found the bucket missing: a bodiless 404 (a
   * HEAD) then says nothing about the object. */
  bucketMissing = false;
  private readonly origin: string;
  private readonly host: string;
  private readonly pathPrefix: string;

  constructor(readonly shard: ShardConfig, private readonly pools: Pools) {
    this.bucket = shard.bucket;
    const url = new URL(shard.endpoint);
    if (shard.pathStyle) {
      this.origin = url.origin;
      this.host = url.host;
      this.pathPrefix = `/${shard.bucket}`;
    } else {
      this.host = `${shard.bucket}.${url.host}`;
      this.origin = `${url.protocol}//${this.host}`;
      this.pathPrefix = '';
    }
  }

  /** Where a copy source on this shard is, for `x-amz-copy-source`. */
  copySource(key: string): string {
    return `/${this.bucket}/${encodePath(key)}`;
  }

  /** Same endpoint and credentials: a server-side copy between the two works. */
  sharesStorageWith(other: Backend): boolean {
    return this.shard.endpoint === other.shard.endpoint &&
      this.shard.credentials.accessKeyId === other.shard.credentials.accessKeyId;
  }

  async request(r: BackendRequest): Promise<Dispatcher.ResponseData> {
    const query = r.query ? encodeQuery(r.query) : '';
    const path = `${this.pathPrefix}/${r.key === undefined ? '' : encodePath(r.key)}${query ? '?' + query : ''}`;
    const hasBody = r.body !== undefined && r.body !== null;
    const headers = sign({
      method: r.method,
      host: this.host,
      path,
      region: this.shard.region,
      headers: r.headers ?? {},
      payloadHash: r.payloadHash ?? (hasBody ? 'UNSIGNED-PAYLOAD' : EMPTY_SHA256),
      credentials: this.shard.credentials,
    });
    const send = () => this.pools.get(this.origin).request({
      method: r.method as Dispatcher.HttpMethod,
      path,
      headers,
      body: r.body ?? null,
      signal: r.signal,
    });
    let response: Dispatcher.ResponseData;
    try {
      response = await send().catch((err) => {
        // A request without a body that never got an answer can be sent
        // again: nothing reached the client yet, and GET/HEAD change nothing.
        if (!IDEMPOTENT.has(r.method) || hasBody || r.signal?.aborted || !RETRYABLE.has(failureKind(err))) throw err;
        channels.backendFailure.publish({ shard: this.bucket, kind: failureKind(err) });
        return send();
      });
    } catch (err) {
      // The client went away and took its request with it: not a backend fault.
      if (r.signal?.aborted) throw err;
      const failure = backendFailure(err, this.bucket);
      if (failure instanceof S3Error && failure.code === 'ServiceUnavailable') {
        channels.backendFailure.publish({ shard: this.bucket, kind: failureKind(err) });
      }
      throw failure;
    }
    channels.backendResponse.publish({
      shard: this.bucket, operation: r.operation ?? 'internal', status: response.statusCode,
      bytesSent: Number(headers['content-length'] ?? 0) || 0,
    });
    return response;
  }
}

const IDEMPOTENT = new Set(['GET', 'HEAD']);
const RETRYABLE = new Set(['connect', 'reset']);

function failureKind(err: unknown): string {
  const code = String((err as { code?: unknown }).code ?? '');
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') return 'connect';
  if (code.includes('TIMEOUT') || code === 'ETIMEDOUT') return 'timeout';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  return 'other';
}

/** The body of a backend's answer broke off (reset, stalled past the idle
 * timeout): a backend fault, counted as one. */
export function brokenAnswer(err: unknown, bucket: string): Error {
  if (isS3Error(err) || err instanceof undiciErrors.RequestAbortedError) return err as Error;
  channels.backendFailure.publish({ shard: bucket, kind: failureKind(err) });
  return backendFailure(err, bucket);
}

// A request body that failed (a bad chunk signature, a checksum mismatch) is
// the client's fault and keeps its own code; everything else that kept us
// from an answer is the backend's fault, never "not found".
function backendFailure(err: unknown, bucket: string): Error {
  if (isS3Error(err)) return err;
  if (err instanceof undiciErrors.RequestAbortedError) return err;
  const cause = (err as { code?: string; message?: string });
  const e = new S3Error('ServiceUnavailable', `Backend bucket ${bucket} failed: ${cause.code ?? cause.message ?? 'error'}`);
  (e as { cause?: unknown }).cause = err;
  return e;
}
