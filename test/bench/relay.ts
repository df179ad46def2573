import { createServer } from 'node:http';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

// The least any Node proxy in front of S3 does: each request sent on as it
// came, its Host and signature too (the backend checks the client's own),
// and both bodies piped through an undici pool. The bench runs it beside the
// proxy, which also classifies, routes and re-signs: what the relay reaches
// is the floor for a proxy written this way on the same machine.

const [port, backend] = process.argv.slice(2);
const pool = new Pool(backend, { connections: 16 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'expect', 'upgrade', 'te', 'trailer']);

createServer(async (req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  try {
    const upstream = await pool.request({
      method: req.method as Dispatcher.HttpMethod, path: req.url!, headers,
      body: req.method === 'PUT' || req.method === 'POST' ? req : null,
    });
    res.writeHead(upstream.statusCode, upstream.headers as Record<string, string | string[]>);
    upstream.body.pipe(res);
  } catch (err) {
    res.destroy(err as Error);
  }
}).listen(Number(port), '127.0.0.1');

process.on('SIGTERM', () => process.exit(0));
