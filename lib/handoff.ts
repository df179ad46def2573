import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { S3Request } from './s3-request';
import { HOP_BY_HOP, pipe } from './forward';

// With --workers N, node:cluster gives each client connection to one worker,
// and a client's next request may come on another connection: Go's HTTP
// client (Tempo, Loki) takes whichever is idle. A listing's next page is
// cheap only on the worker that cached where each shard stopped; anywhere
// else every shard starts over after the last key, which MinIO answers by
// walking the prefix again, so a long listing slows down several times over.
// V2 continuation tokens therefore name the worker that wrote them, and a
// page that reaches another worker is handed to that one over a unix socket
// each worker listens on. The worker the client talks to logs and counts the
// request; the one it is handed to serves it like any other, uncounted.

// undici refuses `expect`, and a listing has no body to wait for.
const DROP_REQUEST_HEADERS = new Set([...HOP_BY_HOP, 'expect']);

/** Where worker `worker` of the primary `primaryPid` takes requests handed to it. */
export function handoffSocket(primaryPid: number, worker: number): string {
  return join(tmpdir(), `tempo-s3-shard-${primaryPid}-${worker}.sock`);
}

// A worker's parent is the primary: one proxy's workers find each other.
function socketPath(worker: number): string {
  return handoffSocket(process.ppid, worker);
}

function without(drop: Set<string>, headers: IncomingMessage['headers'] | Dispatcher.ResponseData['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !drop.has(name)) out[name] = value;
  }
  return out;
}

export class Handoff {
  private readonly server: Server;
  private readonly pools = new Map<number, Pool>();

  /** `self`: this worker's id; `serve` answers the requests handed to it. */
  constructor(readonly self: number, serve: (req: IncomingMessage, res: ServerResponse) => void) {
    this.server = createServer(serve);
  }

  async listen(): Promise<void> {
    const path = socketPath(this.self);
    // Left by an earlier process of the same ids that was killed.
    rmSync(path, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    await closed;
  }

  /**
   * Passes the request to worker `owner` and its answer back to the client.
   * False, with nothing sent, when `owner` is this worker or cannot be
   * reached (it was restarted, or never existed): the caller serves the
   * request itself.
   */
  async pass(owner: number, req: IncomingMessage, res: ServerResponse, s3: S3Request, signal: AbortSignal): Promise<boolean> {
    if (owner === this.self) return false;
    const pool = this.poolFor(owner);
    if (!pool) return false;
    let answer: Dispatcher.ResponseData;
    try {
      answer = await pool.request({ method: 'GET', path: req.url ?? '/', headers: without(DROP_REQUEST_HEADERS, req.headers), signal });
    } catch {
      // Nothing was answered yet, and a listing page may be asked again.
      signal.throwIfAborted();
      this.pools.delete(owner);
      void pool.destroy();
      return false;
    }
    const id = answer.headers['x-amz-request-id'];
    if (typeof id === 'string') s3.backendRequestId = id;
    res.writeHead(answer.statusCode, without(HOP_BY_HOP, answer.headers));
    await pipe(answer.body, res);
    return true;
  }

  private poolFor(owner: number): Pool | undefined {
    let pool = this.pools.get(owner);
    // Only workers whose socket exists get a pool: a token may name any number.
    if (!pool && existsSync(socketPath(owner))) {
      // No cap on connections: a page queued behind another would wait
      // for that page's whole listing; the client's own connections bound them.
      pool = new Pool('http://localhost', { socketPath: socketPath(owner), connections: null });
      this.pools.set(owner, pool);
    }
    return pool;
  }
}
