import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';

// A TCP relay in front of a real MinIO that injects faults on command: it
// refuses, stalls, resets after some response bytes, or answers 503. It
// also counts the connections the proxy holds open to it, and those it has
// closed.

export type Fault =
  | { mode: 'pass' }
  | { mode: 'stall' }
  | { mode: 'reset-after'; bytes: number }
  | { mode: 'reset-first' }
  | { mode: 'status'; status: number };

export interface Faulty {
  endpoint: string;
  set(fault: Fault): void;
  open(): number;
  closed(): number;
  refuse(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaulty(target: string): Promise<Faulty> {
  const { hostname, port: targetPort } = new URL(target);
  let fault: Fault = { mode: 'pass' };
  let relayed = 0;
  let closed = 0;
  const sockets = new Set<Socket>();
  let server: Server;
  let port = 0;
  const onConnection = (client: Socket) => {
    sockets.add(client);
    client.on('close', () => {
      sockets.delete(client);
      closed++;
    });
    client.on('error', () => {});
    const f = fault;
    // A connection made while stalling is stalled chunk by chunk below, so it
    // carries requests again once the fault is lifted, as a kept-alive one does.
    if (f.mode === 'reset-first') {
      fault = { mode: 'pass' };
      client.resetAndDestroy();
      return;
    }
    if (f.mode === 'status') {
      client.once('data', () => {
        client.end(`HTTP/1.1 ${f.status} Fault\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfault`);
      });
      return;
    }
    const upstream = connect(Number(targetPort), hostname);
    sockets.add(upstream);
    upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    // Kept-alive connections outlive a mode change, so each chunk looks at
    // the fault in force when it passes.
    client.on('data', (chunk: Buffer) => {
      const now = fault;
      if (now.mode === 'stall') return;
      if (now.mode === 'reset-first') {
        fault = { mode: 'pass' };
        client.resetAndDestroy();
        return;
      }
      if (now.mode === 'status') {
        client.end(`HTTP/1.1 ${now.status} Fault\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfault`);
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      const now = fault;
      if (client.destroyed || now.mode === 'stall') return;
      if (now.mode !== 'reset-after') {
        client.write(chunk);
        return;
      }
      const room = now.bytes - relayed;
      relayed += chunk.length;
      if (room > 0) client.write(chunk.subarray(0, room));
      if (relayed >= now.bytes) {
        client.resetAndDestroy();
        upstream.destroy();
      }
    });
  };
  const listen = () => new Promise<void>((resolve) => {
    server = createServer(onConnection);
    server.listen(port, '127.0.0.1', () => {
      port = (server.address() as { port: number }).port;
      resolve();
    });
  });
  await listen();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    set(f) { fault = f; relayed = 0; },
    open() { return [...sockets].filter((s) => s.remotePort !== Number(targetPort)).length; },
    closed() { return closed; },
    async refuse() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => { if (server.listening) server.close(() => resolve()); else resolve(); });
    },
  };
}
