import type { Backend } from './backend';

// /readyz answers from a cache that a background probe keeps fresh, so a
// load balancer polling it never adds load to the backends or waits on them.

export interface ShardStatus { bucket: string; endpoint: string; ok: boolean; detail: string }

export class Readiness {
  private status: ShardStatus[];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly backends: readonly Backend[], private readonly intervalMs = 10_000) {
    this.status = backends.map((b) => ({ bucket: b.bucket, endpoint: b.shard.endpoint, ok: false, detail: 'not probed yet' }));
  }

  start(): void {
    void this.probe();
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  current(): readonly ShardStatus[] {
    return this.status;
  }

  ready(): boolean {
    return this.status.every((s) => s.ok);
  }

  async probe(): Promise<readonly ShardStatus[]> {
    this.status = await Promise.all(this.backends.map(async (b): Promise<ShardStatus> => {
      const base = { bucket: b.bucket, endpoint: b.shard.endpoint };
      try {
        const r = await b.request({ method: 'HEAD', signal: AbortSignal.timeout(5_000), operation: 'HeadBucket' });
        await r.body.dump();
        b.bucketMissing = r.statusCode === 404;
        if (r.statusCode === 200) return { ...base, ok: true, detail: 'ok' };
        return { ...base, ok: false, detail: r.statusCode === 404 ? 'bucket missing' : `HEAD answered ${r.statusCode}` };
      } catch (err) {
        return { ...base, ok: false, detail: (err as Error).message };
      }
    }));
    return this.status;
  }
}
