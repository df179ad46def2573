import t from 'tap';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { S3Client, PutObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { startStack, CREDENTIALS } from '../helpers/stack';

// Clients that stall cannot hold the proxy: header and idle timeouts cut
// them off, uploads they abandon leave nothing behind, and connections
// beyond the cap are refused.

const Bucket = 'proxy-bucket';

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

function closedWithin(s: Socket, ms: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    s.on('error', () => {});
    s.once('close', () => { clearTimeout(timer); resolve(Date.now() - started); });
  });
}

t.test('stalled clients are cut off', async (t) => {
  const stack = await startStack(t, { extra: { client_idle_timeout_seconds: 1, max_connections: 8 } });
  const port = Number(new URL(stack.endpoint).port);
  const s3 = new S3Client({ endpoint: stack.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(() => s3.destroy());

  await t.test('half a header block', async (t) => {
    const s = await open(port);
    s.write('GET /proxy-bucket/x HTTP/1.1\r\nHost: x\r\n');
    const ms = await closedWithin(s, 5_000);
    t.ok(ms < 5_000, `closed after ${ms} ms`);
  });

  await t.test('an upload that stops halfway stores nothing', async (t) => {
    const s = await open(port);
    s.write(`PUT /${Bucket}/tenant/slow/obj HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n`);
    s.write(randomBytes(100_000));
    const ms = await closedWithin(s, 5_000);
    t.ok(ms < 5_000, `closed after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 300));
    await t.rejects(s3.send(new HeadObjectCommand({ Bucket, Key: 'tenant/slow/obj' })), { name: 'NotFound' });
  });

  await t.test('a download nobody reads', async (t) => {
    // Larger than loopback's socket buffers (up to 36 MiB here), so the
    // proxy really is left waiting on the reader.
    await s3.send(new PutObjectCommand({ Bucket, Key: 'tenant/slow/big', Body: Buffer.alloc(96 * 1024 * 1024, 7) }));
    const s = await open(port);
    s.pause();
    s.write(`GET /${Bucket}/tenant/slow/big HTTP/1.1\r\nHost: x\r\n\r\n`);
    // A paused socket cannot see its close; read what was buffered afterwards.
    await new Promise((r) => setTimeout(r, 3_000));
    let received = 0;
    s.on('data', (d: Buffer) => { received += d.length; });
    s.resume();
    await closedWithin(s, 5_000);
    t.ok(received < 96 * 1024 * 1024, `cut off after ${(received / 1024 / 1024).toFixed(1)} MiB of 96`);
  });

  await t.test('connections beyond max_connections are refused', async (t) => {
    const held = await Promise.all(Array.from({ length: 8 }, () => open(port)));
    for (const s of held) s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const extra = await open(port);
    const ms = await closedWithin(extra, 2_000);
    t.ok(ms < 2_000, `the ninth connection was closed at once (${ms} ms)`);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const r = await fetch(`${stack.endpoint}/healthz`);
    t.equal(r.status, 200, 'served again once they are gone');
  });
});
