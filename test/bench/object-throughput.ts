import { Readable } from 'node:stream';
import { request } from 'undici';
import aws4 from 'aws4';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startProxyProcess, startRelayProcess } from './proxy-process';

// 1 GiB PUT and GET through the proxy beside the same transfer straight to
// MinIO and through a bare relay (relay.ts: the floor for a Node proxy), and
// the proxy's peak RSS (VmHWM) over the whole run.

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

export async function objectThroughput(print: (line: string) => void): Promise<void> {
  const minio = await startMinio();
  const proxy = await startProxyProcess(minio.endpoint, ['shard1', 'shard2', 'shard3']);
  const relay = await startRelayProcess(minio.endpoint);
  const endpoint = proxy.endpoint;
  try {
    const mib = SIZE / 1024 / 1024;
    const key = 'bench/block/object';
    const directPut = await s3(minio.endpoint, 'PUT', `/shard1/${key}`);
    const directGet = await s3(minio.endpoint, 'GET', `/shard1/${key}`);
    const relayPut = await s3(relay.endpoint, 'PUT', `/shard2/${key}`);
    const relayGet = await s3(relay.endpoint, 'GET', `/shard2/${key}`);
    const idleRss = proxy.rss();
    proxy.resetPeak();
    const proxyPut = await s3(endpoint, 'PUT', `/proxy-bucket/${key}`);
    const putRss = proxy.peakRss();
    const proxyGet = await s3(endpoint, 'GET', `/proxy-bucket/${key}`);
    const rss = proxy.peakRss();
    const rate = (seconds: number) => `${(mib / seconds).toFixed(0).padStart(5)} MiB/s`;
    const ratio = (direct: number, seconds: number) => `${(direct / seconds * 100).toFixed(0).padStart(3)}%`;
    const row = (name: string, direct: number, viaRelay: number, viaProxy: number) =>
      print(`${name.padEnd(4)} direct ${rate(direct)}   bare relay ${rate(viaRelay)} ${ratio(direct, viaRelay)}   ` +
        `proxy ${rate(viaProxy)} ${ratio(direct, viaProxy)}`);
    print(`object ${mib} MiB through the proxy (3 shards) and a bare relay vs MinIO directly`);
    row('PUT', directPut, relayPut, proxyPut);
    row('GET', directGet, relayGet, proxyGet);
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    print(`proxy peak RSS during the transfers ${mb(rss)} MiB (idle before: ${mb(idleRss)} MiB; peak during the PUT ${mb(putRss)} MiB)`);
  } finally {
    await relay.stop();
    await proxy.stop();
    await minio.stop();
  }
}
