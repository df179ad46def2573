import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';

// The client leaving before its answer is complete stops the backend
// requests made for it. undici listens for that on an EventEmitter as well as
// on an AbortSignal; an AbortController and the EventTarget listeners undici
// adds and removes on it cost more than the rest of a small GET's own work
// in Node 20 (measured: 10-15 µs a request), so the object path gets the
// emitter and the AbortSignal is made only for the handlers that need one.
export class ClientSignal extends EventEmitter {
  aborted = false;
  private controller: AbortController | undefined;

  constructor(res: ServerResponse) {
    super();
    // A delete asks every earlier ring owner at once, each request listening.
    this.setMaxListeners(0);
    res.once('close', () => { if (!res.writableFinished) this.abort(); });
  }

  /** The same signal as an AbortSignal, made on first use. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort();
    }
    return this.controller.signal;
  }

  private abort(): void {
    this.aborted = true;
    this.controller?.abort();
    this.emit('abort');
  }
}

/** What a backend request can be stopped by. */
export type Abortable = AbortSignal | ClientSignal;
