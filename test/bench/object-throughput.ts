import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import aws4 from 'aws4';
import { startMinio, freePort, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';

// 1 GiB PUT and GET through the proxy beside the same transfer straight to
// MinIO, and the proxy's peak RSS (VmHWM) over the whole run.

const SIZE = Number(process.env.BENCH_OBJECT_BYTES ?? 1024 * 1024 * 1024);
const creds = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };

function body(size: number): Readable {
  const block = Buffer.alloc(1024 * 1024, 7);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const n = Math.min(block.length, size - sent);
      sent += n;
      this.push(n === block.length ? block : block.subarray(0, n));
    },
  });
}

async function s3(endpoint: string, method: 'PUT' | 'GET', path: string): Promise<number> {
  const url = new URL(endpoint);
  const headers: Record<string, string> = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
  if (method === 'PUT') headers['content-length'] = String(SIZE);
  const signed = aws4.sign({ service: 's3', region: 'us-east-1', method, host: url.host, path, headers }, creds);
  const started = process.hrtime.bigint();
  const r = await request(`${endpoint}${path}`, {
    method, headers: signed.headers as Record<string, string>, body: method === 'PUT' ? body(SIZE) : undefined,
  });
  let bytes = 0;
  for await (const chunk of r.body) bytes += (chunk as Buffer).length;
  if (r.statusCode !== 200) throw new Error(`${method} ${path}: ${r.statusCode}`);
  if (method === 'GET' && bytes !== SIZE) throw new Error(`GET returned ${bytes} bytes`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

// Start-up (compiling the modules) peaks above where the process then
// settles; writing 5 to clear_refs resets the peak, so what is measured is
// the transfer's own.
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

function currentRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export async function objectThroughput(): Promise<void> {
  const minio = await startMinio();
  const dir = mkdtempSync(join(tmpdir(), 'tss-bench-'));
  const port = await freePort();
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    listen_addr: `127.0.0.1:${port}`, endpoint: minio.endpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
    buckets: ['shard1', 'shard2', 'shard3'], log_level: 'warn',
  }));
  const proxy = spawn(process.execPath, [join(__dirname, '..', '..', '..', 'bin', 'tempo-s3-shard'), '--config', config, '--workers', '1'], { stdio: 'inherit' });
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; i < 100; i++) {
      try { await request(`${endpoint}/healthz`).then((r) => r.body.dump()); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    const mib = SIZE / 1024 / 1024;
    const key = 'bench/block/object';
    const directPut = await s3(minio.endpoint, 'PUT', `/shard1/${key}`);
    const directGet = await s3(minio.endpoint, 'GET', `/shard1/${key}`);
    const idleRss = currentRss(proxy.pid!);
    resetPeak(proxy.pid!);
    const proxyPut = await s3(endpoint, 'PUT', `/proxy-bucket/${key}`);
    const putRss = peakRss(proxy.pid!);
    const proxyGet = await s3(endpoint, 'GET', `/proxy-bucket/${key}`);
    const rss = peakRss(proxy.pid!);
    const row = (name: string, direct: number, viaProxy: number) =>
      console.log(`${name.padEnd(4)} direct ${(mib / direct).toFixed(0).padStart(5)} MiB/s   proxy ${(mib / viaProxy).toFixed(0).padStart(5)} MiB/s   ratio ${(direct / viaProxy * 100).toFixed(0)}%`);
    console.log(`object ${mib} MiB through the proxy (3 shards) vs MinIO directly`);
    row('PUT', directPut, proxyPut);
    row('GET', directGet, proxyGet);
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    console.log(`proxy peak RSS during the transfers ${mb(rss)} MiB (idle before: ${mb(idleRss)} MiB; peak during the PUT ${mb(putRss)} MiB)`);
  } finally {
    proxy.kill('SIGTERM');
    await minio.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
