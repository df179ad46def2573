import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Metrics, primarySnapshot } from '../lib/metrics';
import type { MetricsSnapshot } from '../lib/metrics';
import { channels } from '../lib/events';

// The process figures in /metrics are read at scrape time from this very
// process, so each is checked against a change the test makes to it.

const MiB = 1024 * 1024;

function scrape(metrics: Metrics, others: MetricsSnapshot[] = []): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of metrics.render(others).split('\n')) {
    const m = /^((?:process|nodejs)_[a-z_]+\{worker="\d+"\}) (\S+)$/.exec(line);
    if (m) values.set(m[1], Number(m[2]));
  }
  return values;
}

function value(metrics: Metrics, name: string, worker = 0): number {
  const v = scrape(metrics).get(`${name}{worker="${worker}"}`);
  if (v === undefined) throw new Error(`${name} is not in the scrape`);
  return v;
}

t.test('memory, CPU and start time are this process\'s', async (t) => {
  const metrics = new Metrics(0);
  t.teardown(() => metrics.close());
  const rss = value(metrics, 'process_resident_memory_bytes');
  t.ok(Math.abs(rss - process.memoryUsage.rss()) < 16 * MiB, `resident memory ${(rss / MiB).toFixed(1)} MiB`);

  const held = Buffer.alloc(64 * MiB, 1);
  const grown = value(metrics, 'process_resident_memory_bytes');
  t.ok(grown - rss >= 48 * MiB, `64 MiB written: resident ${(rss / MiB).toFixed(1)} -> ${(grown / MiB).toFixed(1)} MiB`);
  t.ok(value(metrics, 'nodejs_external_memory_bytes') >= 64 * MiB, 'the buffer counts as external memory');

  const before = value(metrics, 'nodejs_heap_size_used_bytes');
  // About 80 MiB held: well above any garbage collected meanwhile.
  const objects = Array.from({ length: 1_000_000 }, (_, i) => ({ i, name: `object ${i}` }));
  const heap = value(metrics, 'nodejs_heap_size_used_bytes');
  t.ok(heap - before >= 32 * MiB, `1,000,000 objects: heap ${(before / MiB).toFixed(1)} -> ${(heap / MiB).toFixed(1)} MiB`);
  t.equal(objects.length + held.length, 1_000_000 + 64 * MiB, 'both still held while measured');

  const cpu = value(metrics, 'process_cpu_seconds_total');
  const until = Date.now() + 300;
  while (Date.now() < until) { /* busy */ }
  const spent = value(metrics, 'process_cpu_seconds_total') - cpu;
  t.ok(spent >= 0.2 && spent < 5, `300 ms busy: ${spent.toFixed(3)} CPU s`);

  t.equal(value(metrics, 'process_start_time_seconds'), performance.timeOrigin / 1000, 'started when this process did');
  t.ok(Math.abs(value(metrics, 'process_start_time_seconds') - (Date.now() / 1000 - process.uptime())) < 2, 'agrees with uptime');
});

t.test('file descriptors: each one opened is counted, up to the limit the shell reports', async (t) => {
  const metrics = new Metrics(0);
  t.teardown(() => metrics.close());
  const before = value(metrics, 'process_open_fds');
  const fds = Array.from({ length: 40 }, () => openSync(__filename, 'r'));
  t.equal(value(metrics, 'process_open_fds') - before, 40, '40 files opened');
  for (const fd of fds) closeSync(fd);
  t.equal(value(metrics, 'process_open_fds'), before, 'and closed');
  // A child inherits the limit; the shell reads it through getrlimit, not /proc.
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  t.equal(value(metrics, 'process_max_fds'), limit, `limit ${limit}`);
});

t.test('each worker keeps its own series', async (t) => {
  const metrics = new Metrics(1);
  t.teardown(() => metrics.close());
  const other = new Metrics(2);
  t.teardown(() => other.close());
  const values = scrape(metrics, [other.snapshot()]);
  const rss = [...values].filter(([k]) => k.startsWith('process_resident_memory_bytes'));
  t.same(rss.map(([k]) => k), ['process_resident_memory_bytes{worker="1"}', 'process_resident_memory_bytes{worker="2"}'], 'one line per worker');
  for (const [k, v] of rss) t.ok(v > 10 * MiB && v < 2048 * MiB, `${k} ${(v / MiB).toFixed(1)} MiB`);
  t.equal([...values.keys()].filter((k) => k.startsWith('process_start_time_seconds')).length, 2, 'one start time each');
});

t.test('the primary of --workers shows its own figures, as worker 0, and no request counts', async (t) => {
  const metrics = new Metrics(1);
  t.teardown(() => metrics.close());
  const primary = primarySnapshot();
  t.ok(Object.keys(primary).every((name) => /^(process|nodejs)_/.test(name)), `process figures only: ${Object.keys(primary)}`);
  const values = scrape(metrics, [primary]);
  t.same([...values.keys()].filter((k) => k.startsWith('process_resident_memory_bytes')),
    ['process_resident_memory_bytes{worker="1"}', 'process_resident_memory_bytes{worker="0"}']);
  t.ok(Math.abs(values.get('process_resident_memory_bytes{worker="0"}')! - process.memoryUsage.rss()) < 16 * MiB, 'this process\'s memory');
  t.equal(values.get('process_start_time_seconds{worker="0"}'), performance.timeOrigin / 1000, 'started when this process did');
});

t.test('a worker that has gone leaves its counts in the sums, not its gauges or process figures', async (t) => {
  const gone = new Metrics(3);
  t.teardown(() => gone.close());
  channels.requestStart.publish({ operation: 'unknown' });
  channels.requestEnd.publish({ operation: 'GetObject', status: 200, seconds: 0.02, shard: 's1' });
  channels.requestStart.publish({ operation: 'unknown' });
  channels.backendResponse.publish({ shard: 's1', operation: 'GetObject', status: 503, bytesSent: 0 });
  const last = gone.snapshot();

  const retired: MetricsSnapshot = {};
  Metrics.retire(retired, last);
  Metrics.retire(retired, last);
  const alive = new Metrics(1);
  t.teardown(() => alive.close());
  const text = alive.render([retired]);
  t.match(text, /^tempo_s3_shard_requests_total\{operation="GetObject",status="2xx"\} 2$/m, 'counters of both retirements add up');
  t.match(text, /^tempo_s3_shard_request_duration_seconds_count\{operation="GetObject"\} 2$/m, 'and histograms');
  t.match(text, /^tempo_s3_shard_backend_errors_total\{shard="s1",kind="status_5xx"\} 2$/m);
  t.match(text, /^tempo_s3_shard_requests_in_flight 0$/m, 'its requests in flight went with it');
  t.notMatch(text, /worker="3"/, 'and its process figures');
});
