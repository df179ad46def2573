import { parseArgs } from 'node:util';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './config';
import type { Config } from './config';
import { VirtualBucket } from './virtual-bucket';
import { ShardProxy } from './server';
import { Pools, poolOptions } from './backend';
import { prepareShard } from './shard-buckets';
import { rebalanceCommand } from './rebalance';
import { Logger } from './log';
import { runPrimary } from './workers';
import { BufferReclaimer } from './buffer-reclaim';
import { stopPretenuring } from './pretenuring';
import { channels } from './events';

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

const USAGE = `Usage:
  tempo-s3-shard [serve] --config FILE [--workers N]
                                           run the proxy (N processes on one port;
                                           default one per core)
  tempo-s3-shard locate --config FILE KEY...
                                           print each key and the backend bucket it lives in
                                           (a key of the first virtual bucket, or BUCKET/KEY
                                           naming another)
  tempo-s3-shard check --config FILE [--no-create]
                                           reach every shard bucket, create missing ones
                                           (unless --no-create), print a table of their state
  tempo-s3-shard rebalance --config FILE [--dry-run] [--concurrency N]
                                           move every object that is not at its current owner
                                           there (--dry-run: print what would move)
  tempo-s3-shard --help | --version

Configuration comes from FILE and the S3_* environment variables (see README).
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.`;

function version(): string {
  return JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')).version;
}

export async function main(argv: string[]): Promise<number> {
  // The original tool took Go-style `-config FILE`.
  const args = argv.map((a) => (a === '-config' ? '--config' : a.startsWith('-config=') ? '-' + a : a));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        'no-create': { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        concurrency: { type: 'string' },
        workers: { type: 'string', short: 'w' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return EXIT.ok;
  }
  if (values.version) {
    process.stdout.write(version() + '\n');
    return EXIT.ok;
  }
  const [command = 'serve', ...rest] = positionals;
  let config: Config;
  try {
    config = loadConfig({ file: values.config });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tempo-s3-shard: ${err.message}\n`);
      return EXIT.usage;
    }
    throw err;
  }
  switch (command) {
    case 'serve': {
      const workers = values.workers === undefined ? availableParallelism() : Number(values.workers);
      if (!Number.isInteger(workers) || workers < 1) {
        process.stderr.write(`--workers must be a positive integer\n${USAGE}\n`);
        return EXIT.usage;
      }
      return serve(config, workers);
    }
    case 'locate':
      return locate(config, rest);
    case 'check':
      return check(config, !values['no-create']);
    case 'rebalance': {
      // Objects moved between endpoints stream through this process as they do through `serve`.
      stopPretenuring();
      const reclaimer = new BufferReclaimer();
      reclaimer.start();
      try {
        return EXIT[await rebalanceCommand(config, { dryRun: values['dry-run'], concurrency: values.concurrency })];
      } finally {
        reclaimer.stop();
      }
    }
    default:
      process.stderr.write(`unknown command: ${command}\n${USAGE}\n`);
      return EXIT.usage;
  }
}

function locate(config: Config, keys: string[]): number {
  if (keys.length === 0) {
    process.stderr.write(`locate needs at least one key\n${USAGE}\n`);
    return EXIT.usage;
  }
  // Keys name the first virtual bucket unless given as `bucket/key` for a
  // configured virtual bucket. No request is sent: the pools stay empty.
  const pools = new Pools(poolOptions(config.limits));
  const buckets = new Map(config.virtualBuckets.map((vb) => [vb.name, new VirtualBucket(vb, pools)]));
  const first = buckets.get(config.virtualBuckets[0].name)!;
  for (const key of keys) {
    const slash = key.indexOf('/');
    const named = slash > 0 && buckets.size > 1 ? buckets.get(key.slice(0, slash)) : undefined;
    const owner = named ? named.owner(key.slice(slash + 1)) : first.owner(key);
    process.stdout.write(`${key}\t${owner.bucket}\n`);
  }
  return EXIT.ok;
}

async function check(config: Config, create: boolean): Promise<number> {
  const pools = new Pools(poolOptions(config.limits));
  const rows: string[][] = [['VIRTUAL BUCKET', 'SHARD BUCKET', 'ENDPOINT', 'STATE', 'DETAIL']];
  let ok = true;
  try {
    for (const vb of config.virtualBuckets) {
      // Every generation's buckets: an earlier ring's shard still holds data.
      const backends = new VirtualBucket(vb, pools).backends;
      const reports = await Promise.all(backends.map((b) => prepareShard(b, { create, waitMs: 0 })));
      for (const r of reports) {
        ok &&= r.state === 'ok' || r.state === 'created';
        rows.push([vb.name, r.bucket, r.endpoint, r.state, r.detail]);
      }
    }
  } finally {
    await pools.close();
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ') + '\n');
  return ok ? EXIT.ok : EXIT.failure;
}

async function serve(config: Config, workers: number): Promise<number> {
  stopPretenuring();
  const log = new Logger(config.logLevel);
  if (cluster.isPrimary) {
    if (config.createBuckets && !(await prepareAll(config, log))) return EXIT.failure;
    if (config.clients.length === 0) {
      log.warn('NO CLIENT AUTHENTICATION: anyone who reaches this port can read and delete every object');
    }
    if (workers > 1) return runPrimary(workers, log);
  }
  const proxy = new ShardProxy(config, log);
  let addr: AddressInfo;
  try {
    addr = await proxy.listen();
  } catch (err) {
    log.error('cannot listen', { address: config.listen.host, port: config.listen.port, error: (err as Error).message });
    // A worker stays alive on its channel to the primary, which then never
    // learns that it failed at start-up.
    if (cluster.isWorker) process.disconnect();
    return EXIT.failure;
  }
  const reclaimer = new BufferReclaimer();
  reclaimer.follow(channels.requestStart, channels.requestEnd);
  log.info('listening', {
    address: addr.address, port: addr.port, pid: process.pid,
    virtual_buckets: config.virtualBuckets.map((vb) => ({ name: vb.name, shards: vb.shards.map((s) => s.bucket) })),
  });
  return new Promise((resolve) => {
    // Every signal is heard: systemd signals each process of the unit and the
    // primary signals its workers again, and a second SIGTERM must not kill a
    // worker that is letting its requests finish.
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      log.info('shutting down', { pid: process.pid });
      reclaimer.stop();
      void proxy.close().then(() => {
        // The channel to the primary would keep a finished worker alive.
        if (cluster.isWorker) process.disconnect();
        resolve(EXIT.ok);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

async function prepareAll(config: Config, log: Logger): Promise<boolean> {
  const proxy = new ShardProxy(config, log);
  try {
    await proxy.ensureBuckets();
    return true;
  } catch (err) {
    log.error('cannot prepare the shard buckets', { error: (err as Error).message });
    return false;
  } finally {
    await proxy.close(0);
  }
}
