import t from 'tap';
import { ProgressReporter, formatBytes } from '../lib/progress';

// The rebalance command's progress: a bar on a terminal, JSON lines elsewhere.

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { isTTY, chunks, write(s: string) { chunks.push(s); return true; } } as unknown as NodeJS.WritableStream & { isTTY: boolean; chunks: string[] };
}

t.test('a terminal gets one bar, redrawn in place', async (t) => {
  const out = sink(true);
  const p = new ProgressReporter(out, 'proxy-bucket', { objects: 10, bytes: 10 * 1024 * 1024 });
  p.update({ objects: 5, bytes: 5 * 1024 * 1024 });
  p.update({ objects: 6, bytes: 6 * 1024 * 1024 });
  t.equal(out.chunks.length, 1, 'redrawn at most every 200 ms');
  const line = out.chunks[0];
  t.match(line, /^\rproxy-bucket \[#{12}-{12}\] 5\/10 objects {2}5\.0 MiB\/10\.0 MiB {2}\S+ \S+\/s {2}ETA \d+:\d\d\x1b\[K$/);
  p.finish({ objects: 10, bytes: 10 * 1024 * 1024 });
  t.match(out.chunks[1], /\[#{24}\] 10\/10 objects/);
  t.equal(out.chunks[2], '\n', 'the finished bar keeps its line');
});

t.test('anything else gets JSON lines', async (t) => {
  const out = sink(false);
  const p = new ProgressReporter(out, 'tempo', { objects: 4, bytes: 0 });
  p.update({ objects: 1, bytes: 0 });
  p.update({ objects: 2, bytes: 0 });
  p.finish({ objects: 4, bytes: 0 });
  const lines = out.chunks.map((c) => { t.ok(c.endsWith('\n')); return JSON.parse(c); });
  t.equal(lines.length, 2, 'at most one a second, and the last');
  t.match(lines[0], { event: 'progress', virtual_bucket: 'tempo', objects_done: 1, objects_total: 4, bytes_done: 0, bytes_total: 0 });
  t.type(lines[0].eta_seconds, 'number', 'empty objects still get an ETA, from their count');
  t.match(lines[1], { objects_done: 4, eta_seconds: 0 });
});

t.test('byte counts', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
});
