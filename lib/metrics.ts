import { channels } from './events';
import type { BackendBytes, BackendFailure, BackendResponse, ListPage, ObjectWritten, RequestEnd } from './events';

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

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' = 'counter') {}

  add(labels: Labels, n = 1): void {
    const key = labelText(labels);
    const v = this.values.get(key);
    if (v) v.value += n;
    else this.values.set(key, { labels, value: n });
  }

  render(): string {
    const lines = [`# HELP ${PREFIX}${this.name} ${this.help}`, `# TYPE ${PREFIX}${this.name} ${this.type}`];
    for (const { labels, value } of this.values.values()) lines.push(`${PREFIX}${this.name}${labelText(labels)} ${value}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < BUCKETS.length; i++) if (value <= BUCKETS[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  render(): string {
    const n = PREFIX + this.name;
    const lines = [`# HELP ${n} ${this.help}`, `# TYPE ${n} histogram`];
    for (const s of this.series.values()) {
      BUCKETS.forEach((le, i) => lines.push(`${n}_bucket${labelText({ ...s.labels, le: String(le) })} ${s.counts[i]}`));
      lines.push(`${n}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${n}_sum${labelText(s.labels)} ${s.sum}`);
      lines.push(`${n}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines.join('\n');
  }
}

const statusClass = (status: number) => `${Math.floor(status / 100)}xx`;

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
  private readonly unsubscribe: (() => void)[] = [];

  constructor() {
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
    this.inFlight.add({}, 0);
  }

  private on<T>(channel: { subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): void },
    fn: (m: T) => void): void {
    const handler = (m: unknown) => fn(m as T);
    channel.subscribe(handler);
    this.unsubscribe.push(() => channel.unsubscribe(handler));
  }

  render(): string {
    return [this.requests, this.duration, this.inFlight, this.backendRequests, this.bytesOut, this.bytesIn,
      this.failures, this.written, this.pages].map((m) => m.render()).join('\n') + '\n';
  }

  close(): void {
    for (const u of this.unsubscribe) u();
  }
}
