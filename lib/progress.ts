// Progress of a long job: a one-line bar on a terminal, JSON lines for
// anything else (a log collector, a CI job), at most a few times a second.

export interface Totals { objects: number; bytes: number }
export type Output = NodeJS.WritableStream & { isTTY?: boolean };

export class ProgressReporter {
  private readonly started = Date.now();
  private last = 0;
  private readonly intervalMs: number;

  constructor(private readonly out: Output, private readonly label: string, private readonly total: Totals) {
    this.intervalMs = out.isTTY ? 200 : 1000;
  }

  update(done: Totals): void {
    const now = Date.now();
    if (now - this.last < this.intervalMs) return;
    this.last = now;
    this.render(done);
  }

  finish(done: Totals): void {
    this.render(done);
    if (this.out.isTTY) this.out.write('\n');
  }

  private render(done: Totals): void {
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    const rate = done.bytes / seconds;
    // Objects without bytes (empty markers) still take time: fall back on their count.
    const eta = this.total.bytes > 0 && rate > 0 ? (this.total.bytes - done.bytes) / rate
      : done.objects > 0 ? (this.total.objects - done.objects) * (seconds / done.objects) : null;
    if (!this.out.isTTY) {
      this.out.write(JSON.stringify({
        event: 'progress', virtual_bucket: this.label,
        objects_done: done.objects, objects_total: this.total.objects,
        bytes_done: done.bytes, bytes_total: this.total.bytes,
        bytes_per_second: Math.round(rate), eta_seconds: eta === null ? null : Math.round(eta),
      }) + '\n');
      return;
    }
    const width = 24;
    const share = this.total.objects === 0 ? 1 : done.objects / this.total.objects;
    const filled = Math.round(share * width);
    this.out.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ` +
      `${done.objects}/${this.total.objects} objects  ${formatBytes(done.bytes)}/${formatBytes(this.total.bytes)}  ` +
      `${formatBytes(rate)}/s  ETA ${eta === null ? '?' : formatDuration(eta)}\x1b[K`);
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (x: number) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
