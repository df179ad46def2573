import t from 'tap';
import type { Test } from 'tap';
import { createServer, request } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { ClientSignal } from '../lib/client-signal';

// The signal a request's work listens to: raised when its client leaves
// before the answer is complete, never after a complete answer; the
// AbortSignal made from it agrees whenever it is made.

async function serve(t: Test, handle: (res: ServerResponse, gone: ClientSignal) => void): Promise<string> {
  const server = createServer((_req, res) => handle(res, new ClientSignal(res)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

function leaveAfter(url: string, ms: number): void {
  const req = request(url).on('error', () => {});
  req.end();
  setTimeout(() => req.destroy(), ms);
}

t.test('a client that leaves raises it once, and a signal made afterwards is already aborted', async (t) => {
  let done!: (v: { emitted: number; aborted: boolean; signal: boolean }) => void;
  const result = new Promise<{ emitted: number; aborted: boolean; signal: boolean }>((r) => { done = r; });
  const url = await serve(t, (_res, gone) => {
    let emitted = 0;
    gone.on('abort', () => { emitted++; });
    setTimeout(() => done({ emitted, aborted: gone.aborted, signal: gone.signal.aborted }), 300);
  });
  leaveAfter(url, 50);
  t.same(await result, { emitted: 1, aborted: true, signal: true });
});

t.test('a signal made before the client leaves is aborted when it leaves', async (t) => {
  let done!: (aborted: boolean) => void;
  const result = new Promise<boolean>((r) => { done = r; });
  const url = await serve(t, (_res, gone) => {
    gone.signal.addEventListener('abort', () => done(gone.signal.aborted));
  });
  leaveAfter(url, 50);
  t.equal(await result, true);
});

t.test('a complete answer is not an abort, whatever the client does next', async (t) => {
  let done!: (v: boolean[]) => void;
  const result = new Promise<boolean[]>((r) => { done = r; });
  const url = await serve(t, (res, gone) => {
    res.end('ok');
    res.once('close', () => setTimeout(() => done([gone.aborted, gone.signal.aborted]), 50));
  });
  const body = await new Promise<string>((resolve) => {
    const req = request(url, (r) => {
      let text = '';
      r.on('data', (d) => { text += d; });
      r.on('end', () => { req.destroy(); resolve(text); });
    });
    req.end();
  });
  t.equal(body, 'ok');
  t.same(await result, [false, false]);
});
