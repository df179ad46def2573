import { Readable } from 'node:stream';
import { request } from 'undici';
import aws4 from 'aws4';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startProxyProcess, startRelayProcess } from './proxy-process';
import { median, ratioSpread } from './figures';

// 1 GiB PUT and GET through the proxy beside the same transfer straight to
// MinIO and through a bare relay (relay.ts: the floor for a Node proxy), a
// few rounds, and the proxy's peak RSS (VmHWM) during its transfers.

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

interface Path {
  name: string;
  endpoint: string;
  bucket: string;
  put: number[];
  get: number[];
}

export async function objectThroughput(print: (line: string) => void): Promise<void> {
  const minio = await startMinio();
  const proxy = await startProxyProcess(minio.endpoint, ['shard1', 'shard2', 'shard3']);
  const relay = await startRelayProcess(minio.endpoint);
  try {
    const mib = SIZE / 1024 / 1024;
    const key = 'bench/block/object';
    const paths: Path[] = [
      { name: 'direct', endpoint: minio.endpoint, bucket: 'shard1', put: [], get: [] },
      { name: 'bare relay', endpoint: relay.endpoint, bucket: 'shard2', put: [], get: [] },
      { name: 'proxy', endpoint: proxy.endpoint, bucket: 'proxy-bucket', put: [], get: [] },
    ];
    const idleRss = proxy.rss();
    let putRss = 0;
    let rss = 0;
    // Each round in another order: a later PUT meets the write-back of the
    // gigabytes before it, which would otherwise always fall on one path.
    const rounds = Number(process.env.BENCH_REPEATS ?? 3);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < paths.length; i++) {
        const p = paths[(i + round) % paths.length];
        if (p.name === 'proxy') proxy.resetPeak();
        p.put.push(await s3(p.endpoint, 'PUT', `/${p.bucket}/${key}`));
        if (p.name === 'proxy') putRss = Math.max(putRss, proxy.peakRss());
        p.get.push(await s3(p.endpoint, 'GET', `/${p.bucket}/${key}`));
        if (p.name === 'proxy') rss = Math.max(rss, proxy.peakRss());
      }
    }
    const [direct] = paths;
    const row = (op: 'put' | 'get') => {
      const cells = paths.map((p) => {
        const rate = `${(mib / median(p[op])).toFixed(0).padStart(5)} MiB/s`;
        if (p === direct) return `${p.name} ${rate}`;
        const ratios = p[op].map((seconds, i) => (direct[op][i] / seconds) * 100);
        return `${p.name} ${rate} ${ratioSpread(ratios)}`;
      });
      print(`${op.toUpperCase()}  ${cells.join('   ')}`);
    };
    print(`object ${mib} MiB through the proxy (3 shards) and a bare relay vs MinIO directly, ${rounds} rounds; medians, ratio as median [min..max]`);
    row('put');
    row('get');
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    print(`proxy peak RSS during the transfers ${mb(rss)} MiB (idle before: ${mb(idleRss)} MiB; peak during a PUT ${mb(putRss)} MiB)`);
  } finally {
    await relay.stop();
    await proxy.stop();
    await minio.stop();
  }
}
