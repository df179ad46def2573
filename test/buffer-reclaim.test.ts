import t from 'tap';
import diagnostics from 'node:diagnostics_channel';
import { BufferReclaimer } from '../lib/buffer-reclaim';

const MiB = 1024 * 1024;

t.test('a minor collection frees a buffer that died young', async (t) => {
  const reclaimer = new BufferReclaimer({ growthBytes: 4 * MiB, intervalMs: 10 });
  // One allocation, dropped at once: no collection of V8's own comes between.
  Buffer.alloc(8 * MiB).fill(1);
  const before = process.memoryUsage().arrayBuffers;
  reclaimer.check();
  t.equal(reclaimer.collections, 1);
  // V8 may free the memory on a helper thread, just after the collection.
  let after = process.memoryUsage().arrayBuffers;
  for (let waited = 0; before - after < 8 * MiB && waited < 1_000; waited += 5) {
    await new Promise((res) => setTimeout(res, 5));
    after = process.memoryUsage().arrayBuffers;
  }
  t.ok(before - after >= 8 * MiB, `buffer memory ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB`);
});

t.test('only growth since the lowest mark asks for a collection', async (t) => {
  let bytes = 100;
  const collected: number[] = [];
  const r = new BufferReclaimer({ growthBytes: 10, intervalMs: 10 }, () => collected.push(bytes), () => bytes);
  bytes = 109;
  r.check();
  t.same(collected, [], 'less than the growth');
  bytes = 50;
  r.check();
  bytes = 59;
  r.check();
  t.same(collected, [], 'a fall (V8 collected on its own) lowers the mark');
  bytes = 60;
  r.check();
  t.same(collected, [60]);
  // The fake collection freed nothing: what survived is the new mark.
  bytes = 65;
  r.check();
  t.same(collected, [60], 'memory no collection frees does not ask again');
  bytes = 70;
  r.check();
  t.same(collected, [60, 70]);
  t.equal(r.collections, 2);
});

t.test('started, it looks on its own; stopped, it does not', async (t) => {
  let bytes = 0;
  const r = new BufferReclaimer({ growthBytes: 10, intervalMs: 1 }, () => {}, () => bytes);
  r.start();
  bytes = 10;
  for (let waited = 0; r.collections === 0 && waited < 5_000; waited += 5) await new Promise((res) => setTimeout(res, 5));
  t.equal(r.collections, 1);
  r.stop();
  bytes = 100;
  await new Promise((res) => setTimeout(res, 50));
  t.equal(r.collections, 1);
});

t.test('following requests, it looks only while one is in flight', async (t) => {
  const start = diagnostics.channel(`test:reclaim:start:${process.pid}`);
  const end = diagnostics.channel(`test:reclaim:end:${process.pid}`);
  let bytes = 0;
  const r = new BufferReclaimer({ growthBytes: 10, intervalMs: 1 }, () => {}, () => bytes);
  r.follow(start, end);
  t.teardown(() => r.stop());
  const settle = () => new Promise((res) => setTimeout(res, 50));
  const until = async (n: number) => {
    for (let waited = 0; r.collections < n && waited < 5_000; waited += 5) await new Promise((res) => setTimeout(res, 5));
  };

  bytes = 100;
  await settle();
  t.equal(r.collections, 0, 'no request yet: growth is not looked at');

  start.publish({});
  await settle();
  t.equal(r.collections, 0, 'growth from before the request is not counted against it');
  bytes = 110;
  await until(1);
  t.equal(r.collections, 1, 'a request in flight: growth since it began asks for a collection');

  start.publish({});
  end.publish({});
  bytes = 120;
  await until(2);
  t.equal(r.collections, 2, 'one of two ended: still looking');

  bytes = 130;
  end.publish({});
  t.equal(r.collections, 3, 'the last one ending is looked at once, at once');
  bytes = 200;
  await settle();
  t.equal(r.collections, 3, 'then nothing is looked at');

  r.stop();
  start.publish({});
  bytes = 300;
  await settle();
  t.equal(r.collections, 3, 'stopped, it follows requests no more');
});
