import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { S3Client, PutObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { startFaulty } from '../helpers/faulty';
import type { Faulty } from '../helpers/faulty';
import { startMinio } from '../helpers/minio';
import { Ring } from '../../lib/ring';

// A shard whose endpoint misbehaves: the client hears 503 or 502 quickly,
// never NoSuchKey; the healthy shard keeps serving; the proxy keeps running.

const Bucket = 'proxy-bucket';

t.test('backend faults', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const faulty: Faulty = await startFaulty(minio.endpoint);
  t.teardown(() => faulty.close());
  const stack = await startStack(t, {
    minio,
    extra: {
      buckets: undefined,
      shards: [{ bucket: 'flaky' }, { bucket: 'steady', endpoint: minio.endpoint }],
      endpoint: faulty.endpoint,
      backend_timeout_seconds: 1,
      backend_idle_timeout_seconds: 1,
    },
  });
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  const ring = new Ring(['flaky', 'steady']);
  const keyOn = (shard: string) => {
    for (let i = 0; ; i++) if (ring.locate(`t/b${i}/x`) === shard) return `t/b${i}/x`;
  };
  const flakyKey = keyOn('flaky');
  const steadyKey = keyOn('steady');
  const big = randomBytes(2 * 1024 * 1024);
  await s3.send(new PutObjectCommand({ Bucket, Key: flakyKey, Body: big }));
  await s3.send(new PutObjectCommand({ Bucket, Key: steadyKey, Body: 'steady' }));
  const get = (key: string) => request(`${stack.endpoint}/${Bucket}/${key}`).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));

  const expectFault = async (t: Test, what: string, status: number) => {
    const started = Date.now();
    const r = await get(flakyKey);
    t.equal(r.status, status, `${what}: ${status}`);
    t.notMatch(r.text, 'NoSuchKey', `${what}: never NoSuchKey`);
    t.ok(Date.now() - started < 5_000, `${what}: answered within the configured bound (${Date.now() - started} ms)`);
    const ok = await get(steadyKey);
    t.same([ok.status, ok.text], [200, 'steady'], `${what}: the other shard keeps serving`);
  };

  await t.test('refused', async (t) => {
    await faulty.refuse();
    await expectFault(t, 'refused', 503);
    const r = await get(flakyKey);
    t.match(r.text, '<Code>ServiceUnavailable</Code>');
  });

  // A fresh relay on the same port is not possible, so the rest runs on a new one.
  const relay = await startFaulty(minio.endpoint);
  t.teardown(() => relay.close());
  const stack2 = await startStack(t, {
    minio,
    extra: {
      buckets: undefined,
      shards: [{ bucket: 'flaky' }, { bucket: 'steady', endpoint: minio.endpoint }],
      endpoint: relay.endpoint,
      backend_timeout_seconds: 1,
      backend_idle_timeout_seconds: 1,
      create_buckets: false,
    },
  });
  const get2 = (key: string) => request(`${stack2.endpoint}/${Bucket}/${key}`).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));

  await t.test('stalling, 503 answers, resets', async (t) => {
    relay.set({ mode: 'stall' });
    let started = Date.now();
    let r = await get2(flakyKey);
    t.equal(r.status, 503, 'a stalled backend is a 503');
    t.ok(Date.now() - started < 4_000, `within the 1 s timeout (+ retry): ${Date.now() - started} ms`);
    t.same(await get2(steadyKey).then((x) => [x.status, x.text]), [200, 'steady']);

    relay.set({ mode: 'status', status: 503 });
    r = await get2(flakyKey);
    t.equal(r.status, 503, 'a backend 503 stays a 5xx');
    t.notMatch(r.text, 'NoSuchKey');

    relay.set({ mode: 'reset-first' });
    started = Date.now();
    r = await get2(flakyKey);
    t.equal(r.status, 200, 'a GET whose first connection was reset is retried once');
    t.equal(r.text.length, big.toString().length);

    const resets = async () => Number(/^tempo_s3_shard_backend_errors_total\{shard="flaky",kind="reset"\} (\d+)$/m
      .exec(await request(`${stack2.endpoint}/metrics`).then((x) => x.body.text()))?.[1] ?? 0);
    const resetsBefore = await resets();
    relay.set({ mode: 'reset-after', bytes: 64 * 1024 });
    const cut = await request(`${stack2.endpoint}/${Bucket}/${flakyKey}`).then(async (x) => {
      try { await x.body.arrayBuffer(); return 'complete'; } catch { return 'aborted'; }
    }, () => 'aborted');
    t.equal(cut, 'aborted', 'a body cut mid-way reaches the client as a broken transfer, never as a short 200');
    t.equal(await resets(), resetsBefore + 1, 'and counts as a backend reset');

    relay.set({ mode: 'pass' });
    t.same(await get2(steadyKey).then((x) => [x.status, x.text]), [200, 'steady'], 'the proxy kept running');
  });

  await t.test('clients that go away', async (t) => {
    relay.set({ mode: 'pass' });
    // An upload cut off mid-body leaves nothing behind.
    const key = flakyKey.replace('/x', '/upload');
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${stack2.endpoint}/${Bucket}/${key}`, { method: 'PUT', headers: { 'content-length': String(10 * 1024 * 1024) } });
      req.on('error', () => resolve());
      req.write(randomBytes(1024 * 1024), () => setTimeout(() => { req.destroy(); resolve(); }, 200));
    });
    await new Promise((r) => setTimeout(r, 500));
    await t.rejects(stack2.direct.send(new HeadObjectCommand({ Bucket: 'flaky', Key: key })), { name: 'NotFound' }, 'no object, no half object');

    // Downloads abandoned after the first bytes release their backend connections.
    for (let i = 0; i < 1000; i++) {
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${stack2.endpoint}/${Bucket}/${flakyKey}`, (res) => {
          res.once('data', () => { req.destroy(); resolve(); });
        });
        req.on('error', () => resolve());
        req.end();
      });
    }
    await new Promise((r) => setTimeout(r, 1000));
    const open = relay.open();
    t.ok(open <= 20, `after 1000 aborted downloads the proxy holds ${open} backend connections`);
    t.same(await get2(flakyKey).then((x) => [x.status, x.text.length]), [200, big.toString().length], 'and still serves');

    // Clients that leave while the backend has not answered yet take their
    // backend requests with them, long before the backend timeout (1 s here).
    relay.set({ mode: 'stall' });
    const waiting = Array.from({ length: 5 }, () => httpRequest(`${stack2.endpoint}/${Bucket}/${flakyKey}`).on('error', () => {}));
    for (const req of waiting) req.end();
    await new Promise((r) => setTimeout(r, 300));
    const closedBefore = relay.closed();
    for (const req of waiting) req.destroy();
    // Their backend requests began 300 ms ago: the timeout would close them 700 ms from now.
    await new Promise((r) => setTimeout(r, 500));
    t.ok(relay.closed() - closedBefore >= 5,
      `5 clients left while their GETs waited: the proxy closed ${relay.closed() - closedBefore} backend connections within 500 ms`);
    relay.set({ mode: 'pass' });
    t.same(await get2(flakyKey).then((x) => [x.status, x.text.length]), [200, big.toString().length], 'and serves again');
  });
});
