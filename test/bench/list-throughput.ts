import { statfsSync } from 'node:fs';
import { Agent, request } from 'undici';
import aws4 from 'aws4';
import { startMinio, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';
import { startProxyProcess } from './proxy-process';
import { median, ratioSpread } from './figures';
import { Ring } from '../../lib/ring';

// 100,000 Tempo-like keys spread over 8 shard buckets: keys per second
// listed through the proxy beside the same keys listed from one MinIO
// bucket, and the proxy's peak RSS while it merges.

const KEYS = Number(process.env.BENCH_LIST_KEYS ?? 100_000);
const SHARDS = Array.from({ length: 8 }, (_, i) => `list-shard-${i + 1}`);
const creds = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };
const agent = new Agent({ connections: 64 });
// Names as XML text, and URL-encoded as minio-go (so Tempo and Loki) and the
// AWS CLI always ask for them.
const LIST_STYLES = [
  { label: '', query: '' },
  { label: ' with encoding-type=url', query: '&encoding-type=url' },
];

function signed(endpoint: string, method: string, path: string, headers: Record<string, string> = {}): Record<string, string> {
  return aws4.sign({ service: 's3', region: 'us-east-1', method, host: new URL(endpoint).host, path,
    headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers } }, creds).headers as Record<string, string>;
}

async function put(endpoint: string, path: string, body: Buffer | string = '', headers: Record<string, string> = {}): Promise<void> {
  const r = await request(`${endpoint}${path}`, { method: 'PUT', headers: signed(endpoint, 'PUT', path, headers), body, dispatcher: agent });
  await r.body.dump();
  if (r.statusCode !== 200) throw new Error(`PUT ${path}: ${r.statusCode}`);
}

// A tar of empty files, one per key: MinIO unpacks it into objects itself
// (its "snowball" upload), minutes faster than 200,000 separate PUTs.
function tarOfEmptyFiles(names: string[]): Buffer {
  const tar = Buffer.alloc(512 * (names.length + 2));
  names.forEach((name, i) => {
    const h = tar.subarray(i * 512, (i + 1) * 512);
    h.write(name, 0, 100);
    h.write('0000644\0', 100);           // mode
    h.write('0000000\0', 108);           // uid
    h.write('0000000\0', 116);           // gid
    h.write('00000000000\0', 124);       // size
    h.write('00000000000\0', 136);       // mtime
    h.write('        ', 148);            // checksum, counted as spaces
    h.write('0', 156);                   // a regular file
    h.write('ustar\0' + '00', 257);
    const sum = h.reduce((n, b) => n + b, 0);
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  });
  return tar;
}

function putAsObjects(endpoint: string, bucket: string, keys: string[]): Promise<void> {
  return put(endpoint, `/${bucket}/keys.tar`, tarOfEmptyFiles(keys), { 'x-amz-meta-snowball-auto-extract': 'true' });
}

/** `newConnections`: each page on a connection of its own, as a client with
 * a pool of them may send it. */
async function listAll(endpoint: string, bucket: string, query: string, newConnections = false): Promise<{ keys: number; seconds: number }> {
  const started = process.hrtime.bigint();
  let keys = 0;
  let token: string | undefined;
  do {
    const path = `/${bucket}?list-type=2&max-keys=1000${query}${token ? `&continuation-token=${encodeURIComponent(token)}` : ''}`;
    const dispatcher = newConnections ? new Agent() : agent;
    const r = await request(`${endpoint}${path}`, { headers: signed(endpoint, 'GET', path), dispatcher });
    const xml = await r.body.text();
    if (newConnections) await dispatcher.close();
    if (r.statusCode !== 200) throw new Error(`list: ${r.statusCode} ${xml.slice(0, 200)}`);
    keys += (xml.match(/<Key>/g) ?? []).length;
    token = /<NextContinuationToken>([^<]+)</.exec(xml)?.[1];
  } while (token);
  return { keys, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

// 200,000 objects are created and removed again: on a VM's disk that takes
// minutes, in memory seconds. MinIO lists from memory at least as fast as
// from disk, so the baseline gets no easier.
function memoryDir(): string | undefined {
  try {
    const fs = statfsSync('/dev/shm');
    return fs.bavail * fs.bsize >= 2 * 1024 ** 3 ? '/dev/shm' : undefined;
  } catch {
    return undefined;
  }
}

// node:cluster deals each new connection to the next worker, so a client
// that pages over new connections reaches a worker that does not hold its
// listing every other page: what the handoff to the one that does is worth.
async function listOverWorkers(minioEndpoint: string, rounds: number, print: (line: string) => void): Promise<void> {
  const proxy = await startProxyProcess(minioEndpoint, SHARDS, [], 2);
  try {
    const direct: number[] = [];
    const viaProxy: number[] = [];
    for (let i = 0; i < rounds; i++) {
      for (const [endpointOf, bucket, rates] of [[minioEndpoint, 'single', direct], [proxy.endpoint, 'proxy-bucket', viaProxy]] as const) {
        const r = await listAll(endpointOf, bucket, '', true);
        if (r.keys !== KEYS) throw new Error(`listed ${r.keys} keys of ${KEYS} from ${bucket}`);
        rates.push(r.keys / r.seconds);
      }
    }
    const ratios = viaProxy.map((v, i) => v / direct[i] * 100);
    print(`LIST ${KEYS} keys, each page on a new connection, proxy with 2 workers, ${rounds} rounds   direct ${median(direct).toFixed(0)} keys/s   ` +
      `proxy ${median(viaProxy).toFixed(0)} keys/s   ratio ${ratioSpread(ratios)}`);
  } finally {
    await proxy.stop();
  }
}

export async function listThroughput(print: (line: string) => void): Promise<void> {
  const dataDir = memoryDir();
  const minio = await startMinio(dataDir);
  const proxy = await startProxyProcess(minio.endpoint, SHARDS);
  const endpoint = proxy.endpoint;
  try {
    await put(minio.endpoint, '/single');
    const ring = new Ring(SHARDS);
    const keys = Array.from({ length: KEYS }, (_, i) => `single-tenant/${(i * 2654435761 >>> 0).toString(16).padStart(8, '0')}-block/${['meta.json', 'data.parquet', 'bloom-0', 'index'][i % 4]}`);
    const started = Date.now();
    // Written straight into the buckets the ring names: the bench measures listing, not writing.
    const byShard = new Map<string, string[]>(SHARDS.map((b) => [b, []]));
    for (const k of keys) byShard.get(ring.locate(k))!.push(k);
    await Promise.all([...[...byShard].map(([bucket, ks]) => putAsObjects(minio.endpoint, bucket, ks)),
      putAsObjects(minio.endpoint, 'single', keys)]);
    print(`listing bench: wrote ${KEYS} keys over ${SHARDS.length} shards and into one bucket (MinIO's data in ${dataDir ?? 'the temporary directory'}) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    // Alternating rounds, so a slow spell of the machine hits both sides.
    const rounds = Number(process.env.BENCH_REPEATS ?? 3);
    const rssBefore = proxy.rss();
    proxy.resetPeak();
    for (const style of LIST_STYLES) {
      const direct: number[] = [];
      const viaProxy: number[] = [];
      for (let i = 0; i < rounds; i++) {
        for (const [endpointOf, bucket, rates] of [[minio.endpoint, 'single', direct], [endpoint, 'proxy-bucket', viaProxy]] as const) {
          const r = await listAll(endpointOf, bucket, style.query);
          if (r.keys !== KEYS) throw new Error(`listed ${r.keys} keys of ${KEYS} from ${bucket}`);
          rates.push(r.keys / r.seconds);
        }
      }
      const ratios = viaProxy.map((v, i) => v / direct[i] * 100);
      print(`LIST ${KEYS} keys${style.label}, ${rounds} rounds   direct ${median(direct).toFixed(0)} keys/s   proxy (${SHARDS.length} shards) ${median(viaProxy).toFixed(0)} keys/s   ` +
        `ratio ${ratioSpread(ratios)}`);
    }
    const rss = proxy.peakRss();
    print(`proxy peak RSS while listing ${(rss / 1024 / 1024).toFixed(1)} MiB (idle before: ${(rssBefore / 1024 / 1024).toFixed(1)} MiB)`);
    await listOverWorkers(minio.endpoint, rounds, print);
  } finally {
    await proxy.stop();
    await agent.close();
    await minio.stop();
  }
}

