import type { Channel } from 'node:diagnostics_channel';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Every socket read lands in a new buffer outside the V8 heap, freed only
// when V8 collects the small object that holds it. A large object streams
// through with so little other JavaScript allocation that no young-generation
// collection comes, and V8 waits for 64 MiB of such buffers before it starts
// a full one: streaming at a few hundred MiB/s, the proxy carried 35-45 MiB
// of dead buffers (a third of its peak RSS). A minor collection frees the
// buffers that died young, which is nearly all of them (a chunk lives only
// until the other socket has taken it), in about half a millisecond on this
// small heap. So the proxy looks at its buffer memory every few milliseconds
// and asks for one once that memory has grown by a few MiB. An idle proxy
// frees no buffers, and looking every 10 ms cost it 1% of a core, so the
// proxy looks only while it answers requests.

export interface ReclaimOptions {
  /** How far buffer memory may grow over its lowest mark before a collection is asked for. */
  growthBytes: number;
  intervalMs: number;
}

export const DEFAULT_RECLAIM: ReclaimOptions = { growthBytes: 4 * 1024 * 1024, intervalMs: 10 };

export class BufferReclaimer {
  collections = 0;
  private baseline: number;
  private timer: NodeJS.Timeout | undefined;
  private unfollow: (() => void) | undefined;

  constructor(
    private readonly options: ReclaimOptions = DEFAULT_RECLAIM,
    private readonly collect: () => void = minorCollection(),
    // Buffers count in V8's external memory. process.memoryUsage() would
    // name them apart but reads /proc each time: 30 µs on a busy machine.
    private readonly bufferBytes: () => number = () => getHeapStatistics().external_memory,
  ) {
    this.baseline = bufferBytes();
  }

  start(): void {
    if (this.timer) return;
    // Collections V8 made while nobody looked moved the lowest mark.
    this.baseline = this.bufferBytes();
    this.timer = setInterval(() => this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Looks from a request's start until no request is left, then once more:
   * the last one's buffers died with it. */
  follow(requestStart: Channel, requestEnd: Channel): void {
    let inFlight = 0;
    const begin = () => {
      if (inFlight++ === 0) this.start();
    };
    const end = () => {
      if (--inFlight > 0) return;
      this.check();
      this.pause();
    };
    requestStart.subscribe(begin);
    requestEnd.subscribe(end);
    this.unfollow = () => {
      requestStart.unsubscribe(begin);
      requestEnd.unsubscribe(end);
    };
  }

  stop(): void {
    this.unfollow?.();
    this.unfollow = undefined;
    this.pause();
  }

  private pause(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  check(): void {
    const now = this.bufferBytes();
    // V8's own collections lower the mark; growth counts from the lowest.
    if (now < this.baseline) {
      this.baseline = now;
      return;
    }
    if (now - this.baseline < this.options.growthBytes) return;
    this.collect();
    this.collections++;
    // What survived (buffers still being sent, older ones) is the new mark,
    // so memory that no minor collection frees does not ask again and again.
    this.baseline = this.bufferBytes();
  }
}

type Gc = (options?: { type: 'minor' }) => void;

/** V8's collector, as `--expose-gc` would give it. The flag only installs
 * `gc` in contexts created after it is set, hence the new context. */
function minorCollection(): () => void {
  let gc = (globalThis as { gc?: Gc }).gc;
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as Gc;
    setFlagsFromString('--no-expose-gc');
  }
  return () => gc({ type: 'minor' });
}
