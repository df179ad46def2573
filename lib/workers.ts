import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { rmSync } from 'node:fs';
import type { Logger } from './log';
import { handoffSocket } from './handoff';
import { Metrics, primarySnapshot } from './metrics';
import type { MetricsSnapshot } from './metrics';

// `--workers N`: N processes share one port (node:cluster). The primary only
// supervises: it restarts a worker that dies, forwards SIGTERM, relays
// metric snapshots so that /metrics, whichever worker answers it, counts
// every worker's requests (and shows the primary's own memory and CPU), and
// removes a dead worker's handoff socket.

type Message =
  | { t: 'metrics-request'; id: number; snapshot: MetricsSnapshot }
  | { t: 'metrics-collect'; id: number }
  | { t: 'metrics-snapshot'; id: number; snapshot: MetricsSnapshot }
  | { t: 'metrics-result'; id: number; snapshots: MetricsSnapshot[] };

const COLLECT_TIMEOUT_MS = 1_000;

export function runPrimary(count: number, log: Logger): Promise<number> {
  let stopping = false;
  // Whether each live worker got as far as listening.
  const started = new Map<Worker, boolean>();
  const fork = () => started.set(cluster.fork(), false);
  cluster.on('listening', (worker) => started.set(worker, true));
  for (let i = 0; i < count; i++) fork();

  let nextId = 0;
  // Each worker's latest snapshot stands in for it when it is slow to send
  // one, and what a worker counted stays in the sums after it dies: a sum
  // that drops is a counter reset to Prometheus.
  const latest = new Map<Worker, MetricsSnapshot>();
  const retired: MetricsSnapshot = {};
  cluster.on('message', (from: Worker, msg: Message) => {
    if (msg?.t !== 'metrics-request') return;
    latest.set(from, msg.snapshot);
    const siblings = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w !== from);
    const others = siblings.filter((w) => w.isConnected());
    const id = ++nextId;
    const answered = new Map<Worker, MetricsSnapshot>();
    const finish = () => {
      clearTimeout(timer);
      cluster.off('message', collect);
      const snapshots = siblings.map((w) => answered.get(w) ?? latest.get(w)).filter((s): s is MetricsSnapshot => s !== undefined);
      if (from.isConnected()) {
        from.send({ t: 'metrics-result', id: msg.id, snapshots: [...snapshots, retired, primarySnapshot()] } satisfies Message);
      }
    };
    const collect = (w: Worker, m: Message) => {
      if (m?.t !== 'metrics-snapshot' || m.id !== id) return;
      answered.set(w, m.snapshot);
      latest.set(w, m.snapshot);
      if (answered.size === others.length) finish();
    };
    const timer = setTimeout(finish, COLLECT_TIMEOUT_MS);
    cluster.on('message', collect);
    if (others.length === 0) finish();
    for (const w of others) w.send({ t: 'metrics-collect', id } satisfies Message);
  });

  return new Promise((resolve) => {
    let failed = false;
    cluster.on('exit', (worker, code, signal) => {
      // A worker killed outright leaves its socket behind.
      rmSync(handoffSocket(process.pid, worker.id), { force: true });
      const last = latest.get(worker);
      if (last) Metrics.retire(retired, last);
      latest.delete(worker);
      const listened = started.get(worker);
      started.delete(worker);
      if (stopping) {
        if (started.size === 0) resolve(failed ? 1 : 0);
        return;
      }
      // A worker that dies before it listens fails at start-up: restarting
      // it in a loop helps nobody.
      if (!listened) {
        log.error('worker failed at start-up; stopping', { pid: worker.process.pid, code, signal });
        failed = true;
        stop();
        if (started.size === 0) resolve(code || 1);
        return;
      }
      log.warn('worker died; starting another', { pid: worker.process.pid, code, signal });
      fork();
    });
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const w of started.keys()) w.process.kill('SIGTERM');
    };
    // Every signal is heard: a second must not kill the primary while its
    // workers finish their requests.
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

/** In a worker: answer the primary's snapshot requests, and gather the others' for /metrics. */
export function workerMetrics(metrics: Metrics): () => Promise<string> {
  if (!cluster.isWorker) return async () => metrics.render();
  let nextId = 0;
  const waiting = new Map<number, (s: MetricsSnapshot[]) => void>();
  process.on('message', (msg: Message) => {
    if (msg?.t === 'metrics-collect') process.send!({ t: 'metrics-snapshot', id: msg.id, snapshot: metrics.snapshot() } satisfies Message);
    if (msg?.t === 'metrics-result') {
      waiting.get(msg.id)?.(msg.snapshots);
      waiting.delete(msg.id);
    }
  });
  return () => new Promise((resolve) => {
    const id = ++nextId;
    const timer = setTimeout(() => { waiting.delete(id); resolve(metrics.render()); }, 2 * COLLECT_TIMEOUT_MS);
    waiting.set(id, (snapshots) => { clearTimeout(timer); resolve(metrics.render(snapshots)); });
    process.send!({ t: 'metrics-request', id, snapshot: metrics.snapshot() } satisfies Message);
  });
}
