import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Config } from './config';
import { Pools, poolOptions } from './backend';
import { S3Error, errorXml, isS3Error } from './errors';
import { bucketFromHost, parseS3Request } from './s3-request';
import type { S3Request } from './s3-request';
import { VirtualBucket } from './virtual-bucket';
import { bucketOp, listBuckets } from './bucket-ops';
import { forward } from './forward';
import { list } from './list';
import { deleteObjects } from './delete-objects';
import { copy } from './copy';
import { Logger } from './log';
import { Metrics } from './metrics';
import { workerMetrics } from './workers';
import { Readiness } from './readiness';
import { channels } from './events';
import type { OlderCopyLeft } from './events';
import { Authenticator } from './auth';
import { prepareShard } from './shard-buckets';
import { ClientSignal } from './client-signal';
import { Handoff } from './handoff';

const ADMIN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

// What each client connection had read when its last request was answered.
const readBefore = new WeakMap<Socket, number>();

// Request ids: unique per process by a random prefix, per request by a
// counter; drawing random bytes for each request showed in the profile.
const REQUEST_ID_PREFIX = randomBytes(4).toString('hex').toUpperCase();
let requestCount = 0;
function nextRequestId(): string {
  requestCount = (requestCount + 1) % 0x100000000;
  return REQUEST_ID_PREFIX + requestCount.toString(16).toUpperCase().padStart(8, '0');
}

// Every answer names its request and the proxy. What the proxy answers
// itself is stamped before it is written; a backend answer passed on starts
// from these headers instead, all written in one writeHead(): a header set
// before it puts Node on a slower path (setting, checking and storing each
// header again, ~12 µs a request).
function answerHeaders(requestId: string): Record<string, string> {
  return { 'x-amz-request-id': requestId, server: 'tempo-s3-shard' };
}

function stamp(res: ServerResponse, requestId: string): void {
  const headers = answerHeaders(requestId);
  for (const name in headers) res.setHeader(name, headers[name]);
}

function sendText(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** The request's path as sent, without its query. */
function requestPath(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

// nginx's status for a client that went away before it was answered.
const CLIENT_CLOSED_REQUEST = 499;

// The request path, top to bottom: admin routes, classify the S3 request,
// find its virtual bucket, hand it to the one handler for its operation.
export class ShardProxy {
  readonly server: Server;
  readonly buckets: Map<string, VirtualBucket>;
  readonly metrics = new Metrics(cluster.isWorker ? cluster.worker!.id : 0);
  private readonly metricsText = workerMetrics(this.metrics);
  readonly readiness: Readiness;
  // Absent when no clients are configured: then the proxy serves anyone, as
  // the original tool did, and says so at start-up.
  private readonly authenticator: Authenticator | undefined;
  private readonly pools: Pools;
  private readonly started = new Date();
  // Only workers have siblings to hand listings to.
  private handoff = cluster.isWorker
    ? new Handoff(cluster.worker!.id, (req, res) => { void this.handle(req, res, true); })
    : undefined;

  constructor(readonly config: Config, readonly log: Logger = new Logger(config.logLevel)) {
    this.pools = new Pools(poolOptions(config.limits));
    this.authenticator = config.clients.length === 0 ? undefined : new Authenticator({
      clients: config.clients,
      // minio-go signs its bucket-location lookup for us-east-1.
      regions: [...new Set([config.region, 'us-east-1'])],
      allowAnonymous: config.allowAnonymous,
    });
    this.buckets = new Map(config.virtualBuckets.map((vb) => [vb.name, new VirtualBucket(vb, this.pools)]));
    this.readiness = new Readiness([...this.buckets.values()].flatMap((vb) => vb.backends));
    channels.olderCopyLeft.subscribe(this.logOlderCopy);
    // Idle and header timeouts are checked this often; Node's default (30 s)
    // would let a stalled client linger long past its timeout.
    const handler = (req: IncomingMessage, res: ServerResponse) => { void this.handle(req, res); };
    this.server = config.tls
      ? createHttpsServer({ connectionsCheckingInterval: 1_000, cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }, handler)
      : createServer({ connectionsCheckingInterval: 1_000 }, handler);
    // What Node cannot even parse as HTTP still gets an S3 error body.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable || !err.code?.startsWith('HPE_')) {
        socket.destroy();
        return;
      }
      const requestId = nextRequestId();
      const body = errorXml(new S3Error('InvalidRequest', 'The request is not valid HTTP.'), '/', requestId);
      socket.end('HTTP/1.1 400 Bad Request\r\nServer: tempo-s3-shard\r\nContent-Type: application/xml\r\nX-Amz-Error-Code: InvalidRequest\r\n' +
        `X-Amz-Request-Id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    const { limits } = config;
    // Uploads of any size may take as long as they keep moving; a connection
    // that moves nothing for the idle timeout is dropped.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = Math.min(60_000, limits.clientIdleTimeoutMs);
    this.server.setTimeout(limits.clientIdleTimeoutMs, (socket) => socket.destroy());
    this.server.maxConnections = limits.maxConnections;
    // Go's HTTP client (Tempo, Loki) keeps idle connections for 90 s; closing
    // ours sooner races with its reuse and fails requests at random.
    this.server.keepAliveTimeout = Math.min(95_000, limits.clientIdleTimeoutMs);
  }

  async listen(port = this.config.listen.port, host = this.config.listen.host): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host || undefined, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    await this.handoff?.listen().catch((err: Error) => {
      // A read-only temporary directory: pages that reach another worker
      // then start over, which is slower but gives the same answer.
      this.log.warn('cannot take listings handed over by other workers', { error: err.message });
      this.handoff = undefined;
    });
    this.readiness.start();
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts what is left. */
  async close(graceMs = this.config.limits.shutdownGraceMs): Promise<void> {
    this.readiness.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
    await this.handoff?.close();
    await this.pools.close();
    this.metrics.close();
    channels.olderCopyLeft.unsubscribe(this.logOlderCopy);
  }

  private readonly logOlderCopy = (m: unknown) => {
    const { shard, key, error } = m as OlderCopyLeft;
    this.log.warn('a write left an older copy where an earlier ring put it: undoing the ring change would serve it', { shard, key, error });
  };

  /** `handedOver`: a sibling worker passed the request on, and logs and counts it itself. */
  private async handle(req: IncomingMessage, res: ServerResponse, handedOver = false): Promise<void> {
    const requestId = nextRequestId();
    // Socket counters, so the log holds bytes that really moved (a kept-alive
    // socket carries several requests: only the difference is this one's).
    // A request's headers, and a small body whole, have been read before it
    // is handed over: what it read counts from the end of the one before.
    const socket = req.socket;
    if (this.admin(req, res, requestId)) {
      readBefore.set(socket, socket.bytesRead);
      return;
    }
    const gone = new ClientSignal(res);
    let s3: S3Request | undefined;
    let failedStatus: number | undefined;
    const started = process.hrtime.bigint();
    const read0 = readBefore.get(socket) ?? 0;
    const written0 = socket.bytesWritten;
    if (!handedOver) channels.requestStart.publish({ operation: 'unknown' });
    try {
      s3 = parseS3Request(req, this.config.virtualHostDomains);
      if (this.authenticator) s3.auth = this.authenticator.authenticate({ method: s3.method, url: req.url ?? '/', headers: req.headers });
      await this.dispatch(req, res, s3, gone, requestId);
    } catch (err) {
      failedStatus = this.fail(req, res, err, s3?.resource ?? requestPath(req), requestId);
    } finally {
      // What a sibling handed over, it logs and counts itself.
      if (!handedOver) {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const operation = s3?.operation ?? 'Invalid';
        const shard = s3?.shard ?? null;
        const status = failedStatus ?? res.statusCode;
        channels.requestEnd.publish({ operation, status, seconds, shard });
        const read = socket.bytesRead;
        readBefore.set(socket, read);
        if (this.log.enabled('info')) {
          this.log.info('request', {
            operation, bucket: s3?.bucket ?? null, shard, status,
            bytes_in: read - read0, bytes_out: socket.bytesWritten - written0,
            duration_ms: Math.round(seconds * 1e6) / 1e3, request_id: requestId,
            backend_request_id: s3?.backendRequestId ?? null,
          });
        }
      }
    }
  }

  // Admin paths share the port with S3; a virtual bucket may never be named
  // like them (config refuses it), so they are never confused with a path-style
  // bucket. A virtual-hosted request's path is a key: `/metrics` there is one.
  private admin(req: IncomingMessage, res: ServerResponse, requestId: string): boolean {
    const path = requestPath(req);
    if (!ADMIN_PATHS.has(path) || bucketFromHost(req.headers.host, this.config.virtualHostDomains) !== undefined) return false;
    stamp(res, requestId);
    switch (path) {
      case '/healthz':
        sendText(res, 200, 'ok\n');
        return true;
      case '/readyz': {
        const failing = this.readiness.current().filter((s) => !s.ok);
        sendText(res, failing.length ? 503 : 200, failing.length
          ? failing.map((s) => `not ready: shard ${s.bucket} at ${s.endpoint}: ${s.detail}`).join('\n') + '\n'
          : 'ready\n');
        return true;
      }
      case '/metrics':
        void this.metricsText().then((body) => sendText(res, 200, body, 'text/plain; version=0.0.4; charset=utf-8'));
        return true;
    }
    return true;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, s3: S3Request, gone: ClientSignal,
    requestId: string): Promise<void> {
    if (s3.operation === 'ListBuckets') {
      stamp(res, requestId);
      listBuckets(res, [...this.buckets.values()], this.started);
      return;
    }
    const vb = this.buckets.get(s3.bucket);
    if (!vb) throw new S3Error('NoSuchBucket');
    switch (s3.operation) {
      case 'GetBucketLocation':
      case 'HeadBucket':
      case 'CreateBucket':
      case 'DeleteBucket':
      case 'GetBucketVersioning':
        stamp(res, requestId);
        bucketOp(res, s3, this.config.region);
        return;
      case 'ListObjects':
      case 'ListObjectsV2':
      case 'ListObjectVersions':
      case 'ListMultipartUploads':
        stamp(res, requestId);
        await list(req, res, s3, vb, gone.signal, this.handoff);
        return;
      case 'DeleteObjects':
        stamp(res, requestId);
        await deleteObjects(req, res, s3, vb, gone.signal);
        return;
      case 'CopyObject':
      case 'UploadPartCopy':
        stamp(res, requestId);
        await copy(req, res, s3, this.buckets, vb, gone.signal);
        return;
      default:
        await forward(req, res, s3, vb, gone, answerHeaders(requestId));
    }
  }

  /** Answers with the error if nothing was sent yet; returns the status the
   * request is logged and counted with, which is never the 200 a failure
   * after the headers went out would leave. */
  private fail(req: IncomingMessage, res: ServerResponse, err: unknown, resource: string, requestId: string): number {
    // Nobody is left to answer.
    if (res.destroyed) return CLIENT_CLOSED_REQUEST;
    const s3err = isS3Error(err) ? err : new S3Error('InternalError');
    // NotImplemented is the client's doing; logging it as an error would let
    // any client fill the error log.
    if (!isS3Error(err) || (s3err.status >= 500 && s3err.code !== 'NotImplemented')) {
      this.log.error('request failed', { code: s3err.code, error: String((err as Error)?.message ?? err) });
    }
    if (res.headersSent) {
      // Part of an answer is out: cutting the connection is the only way to
      // tell the client it is incomplete.
      res.destroy();
      return s3err.status;
    }
    stamp(res, requestId);
    // Whatever the client was still sending is no longer wanted; closing
    // after the answer keeps a half-read body from poisoning the connection.
    if (!req.complete) res.setHeader('connection', 'close');
    const headers: Record<string, string> = { 'content-type': 'application/xml' };
    if (req.method === 'HEAD') {
      res.writeHead(s3err.status, { ...headers, 'x-amz-error-code': s3err.code });
      res.end();
      return s3err.status;
    }
    const body = Buffer.from(errorXml(s3err, resource, requestId));
    res.writeHead(s3err.status, { ...headers, 'content-length': String(body.length) });
    res.end(body);
    return s3err.status;
  }

  /** Reaches every shard bucket and creates the missing ones (the original tool did this at start-up). */
  async ensureBuckets(waitMs = 30_000): Promise<void> {
    const backends = [...this.buckets.values()].flatMap((vb) => vb.backends);
    const reports = await Promise.all(backends.map((b) => prepareShard(b, { create: true, waitMs })));
    for (const r of reports) {
      if (r.state === 'created') this.log.info('created shard bucket', { bucket: r.bucket, endpoint: r.endpoint });
    }
    const failed = reports.filter((r) => r.state !== 'ok' && r.state !== 'created');
    if (failed.length) {
      throw new S3Error('ServiceUnavailable', failed.map((r) => `shard bucket ${r.bucket} at ${r.endpoint}: ${r.detail}`).join('; '));
    }
  }
}
