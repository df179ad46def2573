import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { loadConfig } from '../../lib/config';
import type { Config } from '../../lib/config';
import { ShardProxy } from '../../lib/server';
import { Logger } from '../../lib/log';
import { MINIO_PASSWORD, MINIO_USER, startMinio } from './minio';
import type { Minio } from './minio';

// MinIO with shard buckets and the proxy in front, both on ephemeral
// loopback ports, torn down with the test.

export interface Stack {
  minio: Minio;
  proxy: ShardProxy;
  config: Config;
  configFile: string;
  /** http://127.0.0.1:<port> of the proxy */
  endpoint: string;
  /** A client talking straight to MinIO, to see where objects really are. */
  direct: S3Client;
  shards: string[];
  /** Every key in each shard bucket, read directly from MinIO. */
  shardContents(): Promise<Map<string, string[]>>;
}

export const CREDENTIALS = { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD };

export async function startStack(t: Test, opts: { shards?: number; extra?: Record<string, unknown>; minio?: Minio } = {}): Promise<Stack> {
  const minio = opts.minio ?? await startMinio();
  const shards = Array.from({ length: opts.shards ?? 3 }, (_, i) => `shard${i + 1}`);
  const dir = mkdtempSync(join(tmpdir(), 'tss-config-'));
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({
    listen_addr: '127.0.0.1:0',
    endpoint: minio.endpoint,
    access_key_id: MINIO_USER,
    secret_access_key: MINIO_PASSWORD,
    region: 'us-east-1',
    buckets: shards,
    log_level: 'error',
    ...opts.extra,
  }));
  const config = loadConfig({ file: configFile, env: {} });
  const proxy = new ShardProxy(config, new Logger('error'));
  await proxy.ensureBuckets();
  const addr = await proxy.listen(0, '127.0.0.1');
  const direct = new S3Client({ endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS });
  t.teardown(async () => {
    direct.destroy();
    await proxy.close();
    if (!opts.minio) await minio.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    minio, proxy, config, configFile, endpoint: `http://127.0.0.1:${addr.port}`, direct, shards,
    async shardContents() {
      const out = new Map<string, string[]>();
      for (const bucket of shards) {
        const keys: string[] = [];
        let token: string | undefined;
        do {
          const page = await direct.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
          for (const o of page.Contents ?? []) keys.push(o.Key!);
          token = page.NextContinuationToken;
        } while (token);
        out.set(bucket, keys);
      }
      return out;
    },
  };
}
