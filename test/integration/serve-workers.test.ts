import t from 'tap';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { get as httpGet, createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { readFileSync } from 'node:fs';
import aws4 from 'aws4';
import { startMinio, freePort, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startWorkers } from '../helpers/workers';

// The installed command with --workers: one port, several processes, a
// worker that dies is replaced, /metrics counts every worker and shows each
// one's memory, and SIGTERM lets in-flight transfers finish before exiting 0.

const creds = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };

// node:http for the slow reader: undici's client asserts when a paused
// response's socket ends, which is the client's problem, not the server's.
function startDownload(port: number, path: string): Promise<IncomingMessage> {
  const signed = aws4.sign({ service: 's3', region: 'us-east-1', method: 'GET', host: `127.0.0.1:${port}`, path,
    headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, creds);
  return new Promise((resolve, reject) =>
    httpGet(`http://127.0.0.1:${port}${path}`, { headers: signed.headers as Record<string, string> }, resolve).on('error', reject));
}

/** Reads the answer a chunk every 5 ms, so a stop arrives while it is in flight; resolves with the bytes read. */
async function readSlowly(download: IncomingMessage): Promise<number> {
  let received = 0;
  for await (const chunk of download) {
    received += (chunk as Buffer).length;
    await new Promise((r) => setTimeout(r, 5));
  }
  return received;
}

t.test('workers, metrics across them, graceful SIGTERM', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const { child, port, base, exited, log, pids } = await startWorkers(t, minio.endpoint, ['w-1', 'w-2', 'w-3'], 2);
  t.equal(new Set(pids()).size, 2, 'two workers listen');

  const s3 = async (method: 'PUT' | 'GET', key: string, body?: Buffer) => {
    const headers: Record<string, string> = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    const signed = aws4.sign({ service: 's3', region: 'us-east-1', method, host: `127.0.0.1:${port}`, path: `/proxy-bucket/${key}`, headers }, creds);
    // A fresh connection each time, so the requests spread over the workers.
    return request(`${base}/proxy-bucket/${key}`, { method, headers: { ...(signed.headers as Record<string, string>), connection: 'close' }, body, reset: true });
  };
  for (let i = 0; i < 20; i++) {
    const r = await s3('PUT', `tenant/b${i}/meta.json`, Buffer.from('x'));
    await r.body.dump();
    t.equal(r.statusCode, 200);
  }
  for (let i = 0; i < 3; i++) {
    const text = await request(`${base}/metrics`, { reset: true }).then((r) => r.body.text());
    t.match(text, /^tempo_s3_shard_requests_total\{operation="PutObject",status="2xx"\} 20$/m, 'every worker counted, whichever answers');
  }

  // Each worker's own memory line, and the primary's as worker 0, whichever
  // answers; a dead worker's goes with it.
  const memory = async () => {
    const text = await request(`${base}/metrics`, { reset: true }).then((r) => r.body.text());
    return new Map([...text.matchAll(/^process_resident_memory_bytes\{worker="(\d+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  };
  const before = await memory();
  t.equal(before.size, 3, `one resident memory line per worker and the primary's: ${[...before.keys()]}`);
  for (const [worker, rss] of before) t.ok(rss > 20 * 1024 * 1024 && rss < 1024 * 1024 * 1024, `worker ${worker}: ${(rss / 1024 / 1024).toFixed(1)} MiB`);
  const primaryRss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024;
  t.ok(Math.abs(before.get('0')! - primaryRss) < 16 * 1024 * 1024,
    `worker 0 is the primary: ${(before.get('0')! / 1024 / 1024).toFixed(1)} MiB, /proc says ${(primaryRss / 1024 / 1024).toFixed(1)}`);

  process.kill(pids()[0], 'SIGKILL');
  for (let i = 0; i < 100 && pids().length < 3; i++) await new Promise((r) => setTimeout(r, 100));
  t.match(log(), 'worker died; starting another');
  t.equal(pids().length, 3, 'a replacement worker listens');
  const after = await memory();
  t.equal(after.size, 3, `still one line per live worker and the primary's: ${[...after.keys()]}`);
  t.equal([...after.keys()].filter((w) => before.has(w)).length, 2, 'the dead worker\'s line is gone, its replacement\'s is new');
  for (let i = 0; i < 3; i++) {
    const text = await request(`${base}/metrics`, { reset: true }).then((r) => r.body.text());
    t.match(text, /^tempo_s3_shard_requests_total\{operation="PutObject",status="2xx"\} 20$/m,
      'what the dead worker counted stays in the sums (a sum that drops is a counter reset)');
  }
  const again = await s3('GET', 'tenant/b1/meta.json');
  t.equal(await again.body.text(), 'x', 'still serving');

  const big = randomBytes(8 * 1024 * 1024);
  await (await s3('PUT', 'tenant/big/data', big)).body.dump();
  const download = await startDownload(port, '/proxy-bucket/tenant/big/data');
  t.equal(download.statusCode, 200);
  child.kill('SIGTERM');
  t.equal(await readSlowly(download), big.length, 'the in-flight download finished after SIGTERM');
  t.equal(await exited, 0, 'exit 0');
  await t.rejects(request(`${base}/healthz`), 'no longer accepting');
});

// systemd stops a unit by signalling every process in it; the primary then
// signals its workers once more.
t.test('SIGTERM to every process at once still lets a transfer finish', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const { child, port, base, exited, pids } = await startWorkers(t, minio.endpoint, ['w-1', 'w-2'], 2);
  const big = randomBytes(8 * 1024 * 1024);
  const put = aws4.sign({ service: 's3', region: 'us-east-1', method: 'PUT', host: `127.0.0.1:${port}`,
    path: '/proxy-bucket/tenant/big/data', headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, creds);
  const stored = await request(`${base}/proxy-bucket/tenant/big/data`, { method: 'PUT', headers: put.headers as Record<string, string>, body: big });
  await stored.body.dump();
  t.equal(stored.statusCode, 200);
  const download = await startDownload(port, '/proxy-bucket/tenant/big/data');
  t.equal(download.statusCode, 200);
  for (const pid of [child.pid!, ...pids()]) process.kill(pid, 'SIGTERM');
  t.equal(await readSlowly(download), big.length, 'the in-flight download finished');
  t.equal(await exited, 0, 'exit 0');
});

// Workers listen through the primary: a port in use fails each of them.
t.test('a port in use stops every worker, and the proxy exits 1', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.stop());
  const port = await freePort();
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const { exited, log } = await startWorkers(t, minio.endpoint, ['w-1', 'w-2'], 2, process.env, port);
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running after 30 s'), 30_000))]);
  t.equal(code, 1, 'exit 1');
  t.match(log(), '"msg":"cannot listen"', 'the workers say why');
  t.match(log(), 'worker failed at start-up; stopping');
});
