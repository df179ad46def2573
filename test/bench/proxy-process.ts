import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, MINIO_USER, MINIO_PASSWORD } from '../helpers/minio';

// The proxy as users run it (the installed command; one worker unless asked),
// so its memory and CPU can be read from /proc while a bench drives it.

export interface ProxyProcess {
  endpoint: string;
  /** Forgets the start-up peak (compiling the modules), so `peakRss` is the bench's own. */
  resetPeak(): void;
  rss(): number;
  peakRss(): number;
  /** CPU time (user + system) the proxy has used so far. */
  cpuSeconds(): number;
  /** Resolves once the process has exited (and written any --cpu-prof profile). */
  stop(): Promise<void>;
}

/** CPU time (user + system) a process has used: utime and stime, fields 14
 * and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux); the
 * command name before them may hold spaces. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export async function startProxyProcess(minioEndpoint: string, buckets: string[], nodeArgs: string[] = [], workers = 1): Promise<ProxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'tss-bench-'));
  const port = await freePort();
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    listen_addr: `127.0.0.1:${port}`, endpoint: minioEndpoint, access_key_id: MINIO_USER, secret_access_key: MINIO_PASSWORD,
    // Errors only: the warning that no client authentication is configured
    // would otherwise interleave with the figures.
    buckets, log_level: 'error',
  }));
  const child = spawn(process.execPath, [...nodeArgs, join(__dirname, '..', '..', '..', 'bin', 'tempo-s3-shard'), '--config', config, '--workers', String(workers)], { stdio: 'inherit' });
  return watch(child, `http://127.0.0.1:${port}`, () => rmSync(dir, { recursive: true, force: true }));
}

/** The bare relay of relay.ts in front of MinIO, watched as the proxy is. */
export async function startRelayProcess(minioEndpoint: string): Promise<ProxyProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(__dirname, 'relay.js'), String(port), minioEndpoint], { stdio: 'inherit' });
  return watch(child, `http://127.0.0.1:${port}`, () => {});
}

async function watch(child: ChildProcess, endpoint: string, cleanUp: () => void): Promise<ProxyProcess> {
  for (let i = 0; i < 100; i++) {
    try {
      await request(`${endpoint}/healthz`).then((r) => r.body.dump());
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // With --workers N the primary's children serve: every figure is the sum
  // over the primary and its workers (the peak, of each one's own peak).
  const pids = () => [child.pid!, ...readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
    .split(' ').filter(Boolean).map(Number)];
  const status = (field: string) => pids().reduce((sum, pid) => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return sum + (m ? Number(m[1]) * 1024 : NaN);
  }, 0);
  return {
    endpoint,
    resetPeak: () => { for (const pid of pids()) writeFileSync(`/proc/${pid}/clear_refs`, '5'); },
    rss: () => status('VmRSS'),
    peakRss: () => status('VmHWM'),
    cpuSeconds: () => pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      cleanUp();
    },
  };
}
