import { readFileSync } from 'node:fs';

// Where a V8 CPU profile (`node --cpu-prof`) spent its busy time: self time
// summed by area (our modules, each dependency, Node's own layers, the
// socket system calls, GC) and by function. Idle time is left out: the
// proxy waiting for a socket is not cost.

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  const lib = /\/dist\/lib\/([^/]+)\.js$/.exec(url);
  if (lib) return `lib/${lib[1]}.ts`;
  const dep = /node_modules\/([^/]+)\//.exec(url);
  if (dep) return dep[1];
  if (url.startsWith('node:')) {
    if (/node:_http_|node:http/.test(url)) return 'node http';
    if (/streams/.test(url)) return 'node streams';
    if (/crypto/.test(url)) return 'node crypto';
    if (/node:net|stream_base_commons/.test(url)) return 'node net';
    return 'node other';
  }
  if (/^(writev|writeBuffer|writeLatin1String|writeUtf8String)$/.test(functionName)) return 'socket writes (system calls)';
  if (url.startsWith('wasm://')) return 'undici (llhttp wasm)';
  return functionName || '(anonymous)';
}

export function summarise(file: string, top = 12): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = frames.get(id)!;
    const us = profile.timeDeltas[i] ?? 0;
    if (frame.functionName === '(idle)') return;
    busy += us;
    const a = area(frame);
    byArea.set(a, (byArea.get(a) ?? 0) + us);
    const where = frame.url ? ` (${a}:${frame.lineNumber + 1})` : '';
    const f = `${frame.functionName || '(anonymous)'}${where}`;
    byFunction.set(f, (byFunction.get(f) ?? 0) + us);
  });
  const rank = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, us]) => `${(us / busy * 100).toFixed(1).padStart(5)}%  ${name}`);
  return [`busy ${(busy / 1e6).toFixed(1)} s; by area:`, ...rank(byArea), 'by function:', ...rank(byFunction)];
}
