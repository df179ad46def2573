import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { channels } from './events';
import type { BackendBytes, BackendFailure, BackendResponse, ListPage, OlderCopyLeft, ObjectWritten, RequestEnd } from './events';

// Prometheus text exposition, written by hand. Label values are bounded by
// construction: operation names, shard bucket names, status classes and
// failure kinds; never keys, prefixes or tenants.

const PREFIX = 'tempo_s3_shard_';
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

// A family's series are told apart while counting by their label values
// alone (a family always gives its labels in the same order, and no value
// holds a newline); escaping them for the exposition format on every request
// showed in the profile, so that waits for rendering.
function seriesKey(labels: Labels): string {
  let key = '';
  for (const name in labels) key += labels[name] + '\n';
  return key;
}

interface Series { labels: Labels; value: number; counts?: number[]; sum?: number }

/** One family's series from several processes, summed by labels. */
function sumSeries(lists: Series[][]): Series[] {
  const merged = new Map<string, Series>();
  for (const list of lists) {
    for (const s of list) {
      const key = labelText(s.labels);
      const m = merged.get(key);
      if (!m) {
        merged.set(key, { ...s, counts: s.counts && [...s.counts] });
      } else {
        m.value += s.value;
        if (m.counts && s.counts) m.counts.forEach((_, i) => { m.counts![i] += s.counts![i]; });
        if (m.sum !== undefined && s.sum !== undefined) m.sum += s.sum;
      }
    }
  }
  return [...merged.values()];
}

// A family keeps its series by label text, so series from other worker
// processes (their snapshots) add up into the same lines.
abstract class Family {
  protected readonly series = new Map<string, Series>();
  constructor(readonly name: string, readonly help: string, readonly type: string, private readonly prefix = PREFIX) {}

  snapshot(): Series[] {
    return [...this.series.values()];
  }

  render(others: Series[][]): string {
    const n = this.prefix + this.name;
    return [`# HELP ${n} ${this.help}`, `# TYPE ${n} ${this.type}`,
      ...sumSeries([this.snapshot(), ...others]).flatMap((s) => this.lines(n, s))].join('\n');
  }

  protected lines(name: string, s: Series): string[] {
    return [`${name}${labelText(s.labels)} ${s.value}`];
  }
}

class Counter extends Family {
  constructor(name: string, help: string, type: 'counter' | 'gauge' = 'counter') {
    super(name, help, type);
  }

  add(labels: Labels, n = 1): void {
    const key = seriesKey(labels);
    const v = this.series.get(key);
    if (v) v.value += n;
    else this.series.set(key, { labels, value: n });
  }
}

// The process's own figures, read when scraped, under the names every
// Prometheus client library gives them, so dashboards and alerts written for
// any process (memory growth, file descriptors running out) work here too.
// Each worker's series keeps its own `worker` label: memory summed over the
// workers would hide the one that grows.
class Sampled extends Family {
  constructor(name: string, help: string, type: 'counter' | 'gauge', private readonly labels: Labels,
    private readonly read: () => number | undefined) {
    super(name, help, type, '');
  }

  override snapshot(): Series[] {
    const value = this.read();
    return value === undefined ? [] : [{ labels: this.labels, value }];
  }
}

// Linux only, as in other clients; elsewhere the families stay empty.
function openFds(): number | undefined {
  try {
    // The listing itself holds one descriptor open, on the directory.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

function maxFds(): number | undefined {
  try {
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    return limit === undefined ? undefined : Number(limit);
  } catch {
    return undefined;
  }
}

function processFamilies(worker: number): Sampled[] {
  const labels = { worker: String(worker) };
  const gauge = (name: string, help: string, read: () => number | undefined) => new Sampled(name, help, 'gauge', labels, read);
  const started = performance.timeOrigin / 1000;
  return [
    gauge('process_resident_memory_bytes', 'Resident memory of the process, in bytes.', () => process.memoryUsage.rss()),
    new Sampled('process_cpu_seconds_total', 'User and system CPU time the process has used, in seconds.', 'counter', labels, () => {
      const cpu = process.cpuUsage();
      return (cpu.user + cpu.system) / 1e6;
    }),
    gauge('process_start_time_seconds', 'When the process started, in seconds since the Unix epoch.', () => started),
    gauge('process_open_fds', 'File descriptors the process holds open (sockets included).', openFds),
    gauge('process_max_fds', 'The most file descriptors the process may open.', maxFds),
    gauge('nodejs_heap_size_used_bytes', 'JavaScript heap in use, in bytes.', () => process.memoryUsage().heapUsed),
    gauge('nodejs_external_memory_bytes', 'Memory held outside the JavaScript heap by its objects (socket buffers among them), in bytes.',
      () => process.memoryUsage().external),
  ];
}

/** The figures of the primary of `--workers`, which answers no requests, as worker 0. */
export function primarySnapshot(): MetricsSnapshot {
  return Object.fromEntries(processFamilies(0).map((f) => [f.name, f.snapshot()]));
}

class Histogram extends Family {
  constructor(name: string, help: string) {
    super(name, help, 'histogram');
  }

  observe(labels: Labels, value: number): void {
    const key = seriesKey(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: BUCKETS.map(() => 0), sum: 0, value: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < BUCKETS.length; i++) if (value <= BUCKETS[i]) s.counts![i]++;
    s.sum! += value;
    s.value++;
  }

  protected override lines(name: string, s: Series): string[] {
    return [
      ...BUCKETS.map((le, i) => `${name}_bucket${labelText({ ...s.labels, le: String(le) })} ${s.counts![i]}`),
      `${name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.value}`,
      `${name}_sum${labelText(s.labels)} ${s.sum}`,
      `${name}_count${labelText(s.labels)} ${s.value}`,
    ];
  }
}

/** One process's metric values, as sent between cluster workers. */
export type MetricsSnapshot = Record<string, Series[]>;

const statusClass = (status: number) => `${Math.floor(status / 100)}xx`;

/** The families Metrics.retire keeps. */
let counted: string[] | undefined;

export class Metrics {
  private readonly requests = new Counter('requests_total', 'S3 requests answered, by operation and status class.');
  private readonly duration = new Histogram('request_duration_seconds', 'Time to answer an S3 request, by operation.');
  private readonly inFlight = new Counter('requests_in_flight', 'S3 requests being answered.', 'gauge');
  private readonly backendRequests = new Counter('backend_requests_total', 'Requests sent to shard buckets, by shard, operation and status class.');
  private readonly bytesOut = new Counter('backend_bytes_sent_total', 'Request body bytes sent to each shard.');
  private readonly bytesIn = new Counter('backend_bytes_received_total', 'Response body bytes received from each shard.');
  private readonly failures = new Counter('backend_errors_total', 'Backend failures by shard and kind (connect, timeout, reset, status_5xx).');
  private readonly written = new Counter('objects_written_total', 'Objects written per shard: the hash distribution.');
  private readonly pages = new Counter('list_backend_pages_total', 'Listing pages fetched from each shard during fan-out.');
  private readonly olderCopies = new Counter('older_copies_left_total',
    'Writes during a ring transition whose older copy on this shard could not be removed: undoing the ring change would serve it.');
  private readonly process: Sampled[];
  private readonly unsubscribe: (() => void)[] = [];

  /** `worker`: the cluster worker id, or 0 for a proxy running as one process. */
  constructor(worker = 0) {
    this.process = processFamilies(worker);
    this.on(channels.requestStart, () => this.inFlight.add({}, 1));
    this.on(channels.requestEnd, (m: RequestEnd) => {
      this.inFlight.add({}, -1);
      this.requests.add({ operation: m.operation, status: statusClass(m.status) });
      this.duration.observe({ operation: m.operation }, m.seconds);
    });
    this.on(channels.backendResponse, (m: BackendResponse) => {
      this.backendRequests.add({ shard: m.shard, operation: m.operation, status: statusClass(m.status) });
      if (m.bytesSent) this.bytesOut.add({ shard: m.shard }, m.bytesSent);
      if (m.status >= 500) this.failures.add({ shard: m.shard, kind: 'status_5xx' });
    });
    this.on(channels.backendBytesReceived, (m: BackendBytes) => this.bytesIn.add({ shard: m.shard }, m.bytes));
    this.on(channels.backendFailure, (m: BackendFailure) => this.failures.add({ shard: m.shard, kind: m.kind }));
    this.on(channels.objectWritten, (m: ObjectWritten) => this.written.add({ shard: m.shard }));
    this.on(channels.listPage, (m: ListPage) => this.pages.add({ shard: m.shard }));
    this.on(channels.olderCopyLeft, (m: OlderCopyLeft) => this.olderCopies.add({ shard: m.shard }));
    this.inFlight.add({}, 0);
  }

  private on<T>(channel: { subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): void },
    fn: (m: T) => void): void {
    const handler = (m: unknown) => fn(m as T);
    channel.subscribe(handler);
    this.unsubscribe.push(() => channel.unsubscribe(handler));
  }

  private families(): Family[] {
    return [this.requests, this.duration, this.inFlight, this.backendRequests, this.bytesOut, this.bytesIn,
      this.failures, this.written, this.pages, this.olderCopies, ...this.process];
  }

  snapshot(): MetricsSnapshot {
    return Object.fromEntries(this.families().map((f) => [f.name, f.snapshot()]));
  }

  /** Adds to `into` what a worker that has gone still counts: its counters
   * and histograms, so that the sums never drop (Prometheus reads a drop as a
   * reset), but not its gauges, nor its process's figures, which went with it. */
  static retire(into: MetricsSnapshot, gone: MetricsSnapshot): void {
    if (!counted) {
      const m = new Metrics();
      counted = m.families().filter((f) => !(f instanceof Sampled) && f.type !== 'gauge').map((f) => f.name);
      m.close();
    }
    for (const name of counted) if (gone[name]) into[name] = sumSeries([into[name] ?? [], gone[name]]);
  }

  /** This process's metrics, summed with the snapshots of the other workers. */
  render(others: MetricsSnapshot[] = []): string {
    return this.families().map((f) => f.render(others.map((o) => o[f.name] ?? []))).join('\n') + '\n';
  }

  close(): void {
    for (const u of this.unsubscribe) u();
  }
}
