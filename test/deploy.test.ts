import t from 'tap';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, posix, relative, resolve } from 'node:path';
import { sign } from 'aws4';
import { loadConfig } from '../lib/config';
import type { Config } from '../lib/config';
import { ShardProxy } from '../lib/server';
import { Logger } from '../lib/log';
import { run } from './helpers/run';
import { environmentOf, interpolate, isMapping, loadCompose, readYaml } from './helpers/yaml';
import type { Mapping } from './helpers/yaml';

// The deployment files (Dockerfile, compose/, deploy/) cannot be run here:
// there is no Docker engine and systemd is not PID 1. So each is read the way
// its tool reads it and checked against the code it deploys: the proxy's real
// config loader, a real proxy started with the compose config, the metric
// names it really exports, and the files the runtime image would hold.

const ROOT = resolve(__dirname, '..');
const COMPOSE = join(ROOT, 'compose');
const LOCAL = [join(COMPOSE, 'docker-compose.yml')];
const WITH_MINIO = [...LOCAL, join(COMPOSE, 'docker-compose.s3.yml')];
const STACK = [join(COMPOSE, 'stack.yml')];
const STACK_ENV = { S3_ENDPOINT: 'https://s3.example.com' };
const PROXY = 'tempo-s3-shard';
const CONFIG_TARGET = '/etc/tempo-s3-shard/config.json';

const rel = (p: string) => relative(ROOT, p);
const services = (c: Mapping) => c.services as Record<string, Mapping>;
const list = (v: unknown): unknown[] => (v === undefined ? [] : v as unknown[]);

// ---- compose syntax: ports, volumes, depends_on

interface Port { hostIp?: string; published?: number; target: number }

function parsePort(p: unknown): Port {
  if (isMapping(p)) return { hostIp: p.host_ip as string | undefined, published: p.published === undefined ? undefined : Number(p.published), target: Number(p.target) };
  const m = /^(?:(?:([\d.]+|\[[0-9a-f:]+\]):)?(\d+):)?(\d+)(?:\/(tcp|udp))?$/i.exec(String(p));
  if (!m) throw new Error(`${String(p)} is not [ip:][host:]container[/proto]`);
  return { hostIp: m[1], published: m[2] === undefined ? undefined : Number(m[2]), target: Number(m[3]) };
}

interface Mount { kind: 'bind' | 'volume'; source?: string; target: string }

function parseVolume(v: unknown): Mount {
  if (isMapping(v)) return { kind: v.type === 'bind' ? 'bind' : 'volume', source: v.source as string | undefined, target: v.target as string };
  const parts = String(v).split(':');
  if (parts.length === 1) return { kind: 'volume', target: parts[0] };
  const [source, target] = parts;
  return { kind: /^[./~]/.test(source) ? 'bind' : 'volume', source, target };
}

function dependsOn(s: Mapping): Record<string, string> {
  const d = s.depends_on;
  if (d === undefined) return {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((name: string) => [name, 'service_started']));
  return Object.fromEntries(Object.entries(d as Record<string, Mapping>).map(([k, v]) => [k, String(v.condition ?? 'service_started')]));
}

function bindMounts(file: string, c: Mapping): { service: string; path: string; target: string }[] {
  return Object.entries(services(c)).flatMap(([name, s]) => list(s.volumes).map(parseVolume)
    .filter((m) => m.kind === 'bind')
    .map((m) => ({ service: name, path: resolve(dirname(file), m.source!), target: m.target })));
}

// ---- the Dockerfile, read as `docker build` reads it

interface Instruction { op: string; args: string }
interface Stage { name?: string; from: string; steps: Instruction[] }

function dockerfileStages(): Stage[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\\\n/g, ' ').split('\n');
  const stages: Stage[] = [];
  for (const line of lines.map((l) => l.trim()).filter(Boolean)) {
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: m[1], name: m[2], steps: [] });
    } else {
      stages[stages.length - 1].steps.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

const steps = (stage: Stage, op: string) => stage.steps.filter((s) => s.op === op);

interface Copy { from?: string; sources: string[]; dest: string }

function parseCopy(args: string): Copy {
  const words = args.split(/\s+/);
  const from = words[0].startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
  const dest = words.pop()!;
  return { from, sources: words, dest };
}

// .dockerignore: the last pattern matching a path or one of its parents decides.
function dockerIgnored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n')
    .map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const toRegExp = (glob: string) => new RegExp('^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*/g, '\0').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\0/g, '.*') + '$');
  const parts = posix.normalize(path).split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const re = toRegExp(posix.normalize(negated ? raw.slice(1) : raw).replace(/^\/|\/$/g, ''));
    if (candidates.some((c) => re.test(c))) ignored = !negated;
  }
  return ignored;
}

// ---- metrics exposition

interface Exposition { names: Set<string>; families: Set<string>; labels: Set<string> }

function readExposition(text: string): Exposition {
  const names = new Set<string>();
  const families = new Set<string>();
  const labels = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    families.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1] + s);
    else names.add(m[1]);
  }
  for (const m of text.matchAll(/^[a-zA-Z_:][a-zA-Z0-9_:]*\{([^}]*)\}/gm)) {
    for (const l of m[1].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]);
  }
  return { names, families, labels };
}

// ---- what the stacks give the proxy

function proxyEnv(files: string[], env: Record<string, string> = {}): Record<string, string> {
  return environmentOf(services(loadCompose(files, env).value)[PROXY]);
}

function composeConfigFile(): string {
  const mount = bindMounts(LOCAL[0], loadCompose(LOCAL, {}).value).find((m) => m.service === PROXY && m.target === CONFIG_TARGET);
  if (!mount) throw new Error(`no bind mount of ${CONFIG_TARGET} in ${PROXY}`);
  return mount.path;
}

const loadComposeConfig = (files = LOCAL, env: Record<string, string> = {}): Config =>
  loadConfig({ file: composeConfigFile(), env: proxyEnv(files, env) });

// ---- tests

t.test('every compose and stack file parses, and each service can run', async (t) => {
  for (const files of [LOCAL, WITH_MINIO, STACK]) {
    const name = files.map(rel).join(' + ');
    const { value: c, unset } = loadCompose(files, files === STACK ? STACK_ENV : {});
    t.same(unset, [], `${name}: every variable has a default or is required`);
    const all = services(c);
    t.ok(Object.keys(all).length > 0, `${name}: has services`);
    const published = new Map<string, string>();
    for (const [svc, s] of Object.entries(all)) {
      t.ok(typeof s.image === 'string' || s.build !== undefined, `${name} ${svc}: image or build`);
      if (s.build !== undefined) {
        const context = resolve(dirname(files[0]), isMapping(s.build) ? String(s.build.context) : String(s.build));
        const dockerfile = isMapping(s.build) && s.build.dockerfile ? String(s.build.dockerfile) : 'Dockerfile';
        t.ok(existsSync(join(context, dockerfile)), `${name} ${svc}: ${rel(join(context, dockerfile))} exists`);
      }
      for (const raw of list(s.ports)) {
        const p = parsePort(raw);
        t.ok(p.target >= 1 && p.target <= 65535, `${name} ${svc}: container port ${p.target}`);
        if (p.published !== undefined) {
          t.ok(p.published >= 1 && p.published <= 65535, `${name} ${svc}: host port ${p.published}`);
          const key = `${p.hostIp ?? '0.0.0.0'}:${p.published}`;
          t.notOk(published.has(key), `${name} ${svc}: ${key} published once (also ${published.get(key) ?? 'nowhere'})`);
          published.set(key, svc);
        }
        if (p.hostIp !== undefined) t.ok(isIP(p.hostIp.replace(/^\[|\]$/g, '')), `${name} ${svc}: ${p.hostIp} is an address`);
      }
      for (const [dep, condition] of Object.entries(dependsOn(s))) {
        t.ok(all[dep], `${name} ${svc}: depends on ${dep}, which is a service`);
        t.ok(['service_started', 'service_healthy', 'service_completed_successfully'].includes(condition), `${name} ${svc}: condition ${condition}`);
        if (condition === 'service_healthy') {
          const target = all[dep];
          const hasCheck = isMapping(target.healthcheck) && target.healthcheck.test !== undefined
            || (target.build !== undefined && dockerfileStages().at(-1)!.steps.some((x) => x.op === 'HEALTHCHECK'));
          t.ok(hasCheck, `${name} ${svc}: ${dep} has a health check to wait for`);
        }
      }
      for (const m of list(s.volumes).map(parseVolume)) {
        t.ok(posix.isAbsolute(m.target), `${name} ${svc}: mount target ${m.target} is absolute`);
        if (m.kind === 'volume' && m.source) t.ok(isMapping(c.volumes) && m.source in c.volumes, `${name} ${svc}: volume ${m.source} is declared`);
      }
      for (const ref of list(s.secrets)) {
        const source = isMapping(ref) ? String(ref.source) : String(ref);
        t.ok(isMapping(c.secrets) && source in c.secrets, `${name} ${svc}: secret ${source} is declared`);
      }
      for (const ref of list(s.configs)) {
        const source = isMapping(ref) ? String(ref.source) : String(ref);
        t.ok(isMapping(c.configs) && source in c.configs, `${name} ${svc}: config ${source} is declared`);
      }
      const networks = Array.isArray(s.networks) ? s.networks : Object.keys((s.networks ?? {}) as Mapping);
      for (const n of networks) t.ok(isMapping(c.networks) && String(n) in c.networks, `${name} ${svc}: network ${String(n)} is declared`);
    }
  }
  t.throws(() => loadCompose(STACK, {}), /S3_ENDPOINT/, 'the stack refuses to deploy without S3_ENDPOINT');
});

t.test('every local file a service mounts exists, and the configs among them parse', async (t) => {
  const files = new Map<string, string>();
  for (const f of [...LOCAL, ...WITH_MINIO.slice(1), ...STACK]) {
    const c = loadCompose([f], f === STACK[0] ? STACK_ENV : {}).value;
    for (const m of bindMounts(f, c)) files.set(m.path, `${rel(f)} ${m.service} -> ${m.target}`);
    for (const [name, cfg] of Object.entries((c.configs ?? {}) as Record<string, Mapping>)) {
      if (cfg.file) files.set(resolve(dirname(f), String(cfg.file)), `${rel(f)} config ${name}`);
    }
  }
  t.ok(files.size >= 6, `${files.size} mounted files and directories`);
  const parse = (path: string, what: string) => {
    const ext = extname(path);
    if (ext === '.json') t.doesNotThrow(() => JSON.parse(readFileSync(path, 'utf8')), `${rel(path)} (${what}) is JSON`);
    else if (ext === '.yaml' || ext === '.yml') t.doesNotThrow(() => readYaml(path), `${rel(path)} (${what}) is YAML`);
    else t.fail(`${rel(path)} (${what}): no parser for ${ext || 'a file without extension'}`);
  };
  for (const [path, what] of files) {
    t.ok(path.startsWith(ROOT + '/'), `${what}: inside the repository`);
    if (!existsSync(path)) {
      t.fail(`${what}: ${rel(path)} does not exist`);
      continue;
    }
    if (statSync(path).isDirectory()) {
      const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true })
        .flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
      const inside = walk(path);
      t.ok(inside.length > 0, `${rel(path)} (${what}) is not empty`);
      for (const p of inside) parse(p, what);
    } else {
      parse(path, what);
    }
  }
});

t.test('the proxy config of each stack loads with the environment the stack gives it', async (t) => {
  const local = loadComposeConfig();
  t.same(local.virtualBuckets.map((vb) => vb.name), ['tempo', 'loki'], 'virtual buckets tempo and loki');
  t.equal(local.virtualBuckets[0].shards[0].endpoint, 'http://minio:9000', 'defaults to the overlay MinIO');
  t.equal(local.listen.port, 8080);
  const ports = list(services(loadCompose(LOCAL, {}).value)[PROXY].ports).map(parsePort);
  t.ok(ports.some((p) => p.target === local.listen.port), 'the compose file publishes the port the proxy listens on');

  const external = loadComposeConfig(LOCAL, { S3_ENDPOINT: 'https://s3.eu-west-1.example.com', S3_REGION: 'eu-west-1', S3_ACCESS_KEY_ID: 'AKIDOPERATOR', S3_SECRET_ACCESS_KEY: 'operator-secret' });
  for (const shard of external.virtualBuckets.flatMap((vb) => vb.shards)) {
    t.same([shard.endpoint, shard.region, shard.credentials.accessKeyId, shard.credentials.secretAccessKey],
      ['https://s3.eu-west-1.example.com', 'eu-west-1', 'AKIDOPERATOR', 'operator-secret'], `S3_* from the environment reach ${shard.bucket}`);
  }

  // Swarm mounts secrets under /run/secrets: put them in a directory of our own instead.
  const dir = mkdtempSync(join(tmpdir(), 'tss-stack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stack = loadCompose(STACK, STACK_ENV).value;
  const svc = services(stack)[PROXY];
  const secretValue = (name: string) => `value-of-${name}`;
  for (const ref of list(svc.secrets)) writeFileSync(join(dir, String(ref)), secretValue(String(ref)) + '\n');
  const toDir = (s: string) => s.replaceAll('/run/secrets/', dir + '/');
  const cfg = list(svc.configs).map((c) => c as Mapping).find((c) => c.target === CONFIG_TARGET);
  t.ok(cfg, `the stack mounts a config at ${CONFIG_TARGET}`);
  // One worker per core of the node would outgrow the task's memory limit on a large node.
  const command = list(svc.command).map(String);
  t.same(command.slice(0, 2), ['--config', CONFIG_TARGET], 'the stack\'s proxy reads that config');
  const workers = Number(command[command.indexOf('--workers') + 1]);
  const limit = String(((svc.deploy as Mapping).resources as Mapping & { limits: Mapping }).limits.memory);
  t.ok(command.includes('--workers') && workers * 190 + 80 <= parseInt(limit, 10),
    `a fixed number of workers (${workers}) whose peaks (190 MiB each, the primary 80) fit the limit (${limit})`);
  const stackConfigFile = join(dir, 'config.json');
  const file = resolve(COMPOSE, String(((stack.configs as Record<string, Mapping>)[String(cfg!.source)]).file));
  writeFileSync(stackConfigFile, toDir(readFileSync(file, 'utf8')));
  const env = Object.fromEntries(Object.entries(environmentOf(svc)).map(([k, v]) => [k, toDir(v)]));
  const swarm = loadConfig({ file: stackConfigFile, env });
  t.same(swarm.virtualBuckets[0].shards[0].credentials,
    { accessKeyId: secretValue('s3_access_key_id'), secretAccessKey: secretValue('s3_secret_access_key') }, 'backend credentials from the Swarm secrets');
  t.same(swarm.clients.map((c) => c.secretAccessKey).sort(),
    [secretValue('loki_client_secret_key'), secretValue('tempo_client_secret_key')], 'client secrets from the Swarm secrets');
  t.same(swarm.virtualBuckets, local.virtualBuckets.map((vb) => ({ ...vb, shards: vb.shards.map((s) => ({ ...s, endpoint: 'https://s3.example.com', credentials: swarm.virtualBuckets[0].shards[0].credentials })) })),
    'the same virtual buckets and shards as the compose stack');
  t.notMatch(readFileSync(file, 'utf8'), /"secret_access_key"\s*:/, 'no secret written into the Swarm config');
});

t.test('Tempo, Loki and Prometheus point at the proxy, its virtual buckets and its clients', async (t) => {
  const c = loadCompose(LOCAL, {}).value;
  const all = services(c);
  const config = loadComposeConfig();
  const endpoint = `${PROXY}:${config.listen.port}`;
  const names = config.virtualBuckets.map((vb) => vb.name);
  const mounted = (svc: string, target: string) => {
    const m = bindMounts(LOCAL[0], c).find((x) => x.service === svc && x.target === target);
    if (!m) throw new Error(`${svc} mounts nothing at ${target}`);
    return m.path;
  };
  const commandFlag = (svc: string, flag: string) => list(all[svc].command).map(String).find((a) => a.startsWith(`-${flag}=`))?.split('=')[1];
  // Tempo and Loki expand ${VAR} in their config (-config.expand-env) from their environment.
  const expand = (svc: string, v: unknown) => {
    const r = interpolate(String(v), environmentOf(all[svc]));
    t.same(r.unset, [], `${svc}: every variable its config uses is set`);
    return r.value;
  };
  const isClient = (id: string, secret: string) => config.clients.some((k) => k.accessKeyId === id && k.secretAccessKey === secret);

  for (const [svc, configPath, get] of [
    ['tempo', '/etc/tempo.yaml', (y: Mapping) => {
      const s3 = ((y.storage as Mapping).trace as Mapping).s3 as Mapping;
      return { s3, bucket: s3.bucket, id: s3.access_key, secret: s3.secret_key, pathStyle: s3.forcepathstyle };
    }],
    ['loki', '/etc/loki/loki.yaml', (y: Mapping) => {
      const s3 = ((y.common as Mapping).storage as Mapping).s3 as Mapping;
      return { s3, bucket: s3.bucketnames, id: s3.access_key_id, secret: s3.secret_access_key, pathStyle: s3.s3forcepathstyle };
    }],
  ] as const) {
    t.equal(commandFlag(svc, 'config.file'), configPath, `${svc} reads the mounted config`);
    t.equal(commandFlag(svc, 'config.expand-env'), 'true', `${svc} expands its environment in it`);
    const s = get(readYaml(mounted(svc, configPath)) as Mapping);
    t.equal(s.s3.endpoint, endpoint, `${svc} stores through ${endpoint}`);
    t.equal(s.s3.insecure, true, `${svc} speaks plain HTTP to the proxy`);
    t.equal(s.pathStyle, true, `${svc} uses path-style requests`);
    t.ok(names.includes(String(s.bucket)), `${svc}'s bucket ${String(s.bucket)} is one of the proxy's virtual buckets (${names.join(', ')})`);
    t.ok(isClient(expand(svc, s.id), expand(svc, s.secret)), `${svc} signs as one of the proxy's clients`);
    t.same(dependsOn(all[svc])[PROXY], 'service_healthy', `${svc} waits for the proxy to be ready`);
  }

  const prometheus = readYaml(mounted('prometheus', '/etc/prometheus/prometheus.yml')) as Mapping;
  const jobs = prometheus.scrape_configs as Mapping[];
  const proxyJob = jobs.find((j) => list(j.static_configs).some((s) => list((s as Mapping).targets).includes(endpoint)));
  t.ok(proxyJob, `Prometheus scrapes ${endpoint}`);
  t.equal(proxyJob?.metrics_path ?? '/metrics', '/metrics', 'at /metrics');

  const provisioning = mounted('grafana', '/etc/grafana/provisioning');
  const datasources = (readYaml(join(provisioning, 'datasources', 'datasources.yml')) as Mapping).datasources as Mapping[];
  t.same(datasources.map((d) => d.type).sort(), ['loki', 'prometheus', 'tempo'], 'Grafana has Prometheus, Tempo and Loki');
  for (const d of datasources) {
    const host = new URL(String(d.url)).host;
    const [svc, port] = host.split(':');
    t.ok(list(all[svc]?.ports).map(parsePort).some((p) => p.target === Number(port)), `${d.name} at ${host}: a service of the stack, on its port`);
  }
  const providers = (readYaml(join(provisioning, 'dashboards', 'dashboards.yml')) as Mapping).providers as Mapping[];
  const dashboardsDir = mounted('grafana', String((providers[0].options as Mapping).path));
  t.ok(existsSync(join(dashboardsDir, 'tempo-s3-shard.json')), 'the dashboard provider reads the mounted dashboard');
});

t.test('minio-init creates exactly the shard buckets the proxy uses, with the credentials it uses', async (t) => {
  const envs: Record<string, string>[] = [{}, { S3_ACCESS_KEY_ID: 'other-admin', S3_SECRET_ACCESS_KEY: 'other-secret-key' }];
  for (const env of envs) {
    const c = loadCompose(WITH_MINIO, env).value;
    const all = services(c);
    const config = loadComposeConfig(WITH_MINIO, env);
    const init = all['minio-init'];
    const script = list(init.command).join('\n');
    const created = [...script.matchAll(/\blocal\/([a-z0-9.-]+)/g)].map((m) => m[1]).sort();
    const shards = config.virtualBuckets.flatMap((vb) => vb.shards.map((s) => s.bucket)).sort();
    t.same(created, shards, `minio-init creates ${shards.join(', ')}`);
    t.match(script, /mc mb --ignore-existing/, 'and tolerates a second run');
    const minioEnv = environmentOf(all.minio);
    const backend = config.virtualBuckets[0].shards[0];
    t.same([minioEnv.MINIO_ROOT_USER, minioEnv.MINIO_ROOT_PASSWORD], [backend.credentials.accessKeyId, backend.credentials.secretAccessKey],
      `the proxy signs with MinIO's credentials (${JSON.stringify(env)})`);
    t.same(environmentOf(init).MINIO_ROOT_USER, minioEnv.MINIO_ROOT_USER, 'minio-init logs in as MinIO\'s user');
    const url = new URL(backend.endpoint);
    t.equal(url.hostname, 'minio', 'the proxy reaches the minio service');
    t.ok(list(all.minio.ports).map(parsePort).some((p) => p.target === Number(url.port)), `on MinIO's API port ${url.port}`);
    t.ok(list(all.minio.ports).map(parsePort).some((p) => p.target === 9001), 'the console is published');
    t.equal(dependsOn(all[PROXY])['minio-init'], 'service_completed_successfully', 'the proxy starts after the buckets exist');
    t.equal(dependsOn(init).minio, 'service_healthy', 'minio-init waits for MinIO');
  }
});

t.test('the compose config starts a real proxy that exports every metric the dashboard reads', async (t) => {
  const config = loadComposeConfig();
  const proxy = new ShardProxy(config, new Logger('error'));
  const addr = await proxy.listen(0, '127.0.0.1');
  t.teardown(() => proxy.close());
  const base = `http://127.0.0.1:${addr.port}`;

  const health = await fetch(`${base}/healthz`);
  t.same([health.status, await health.text()], [200, 'ok\n'], '/healthz answers');
  // The compose default backend (the overlay's minio) does not resolve here;
  // a finished probe also puts the backend metrics, and their labels, in the scrape.
  const probed = await proxy.readiness.probe();
  t.same(probed.filter((p) => p.ok), [], 'no shard bucket is reachable without the MinIO overlay');

  // ListBuckets, signed as Tempo signs (its credentials as the compose file gives them).
  const tempoEnv = environmentOf(services(loadCompose(LOCAL, {}).value).tempo);
  const signed = sign({ host: `127.0.0.1:${addr.port}`, path: '/', method: 'GET', service: 's3', region: config.region },
    { accessKeyId: tempoEnv.TEMPO_S3_ACCESS_KEY, secretAccessKey: tempoEnv.TEMPO_S3_SECRET_KEY });
  const listing = await fetch(`${base}/`, { headers: signed.headers as Record<string, string> });
  const xml = await listing.text();
  t.equal(listing.status, 200, `ListBuckets as tempo: ${xml.slice(0, 200)}`);
  for (const vb of config.virtualBuckets) t.match(xml, `<Name>${vb.name}</Name>`, `lists ${vb.name}`);
  const forged = sign({ host: `127.0.0.1:${addr.port}`, path: '/', method: 'GET', service: 's3', region: config.region },
    { accessKeyId: tempoEnv.TEMPO_S3_ACCESS_KEY, secretAccessKey: 'not-the-secret' });
  t.equal((await fetch(`${base}/`, { headers: forged.headers as Record<string, string> })).status, 403, 'a wrong client secret is refused');

  const scrape = await fetch(`${base}/metrics`);
  t.equal(scrape.status, 200);
  const exposition = readExposition(await scrape.text());
  t.ok(exposition.names.has('tempo_s3_shard_requests_total'), 'the scrape holds the request counter');
  t.ok(exposition.labels.has('operation'), 'and its labels');

  const dashboard = JSON.parse(readFileSync(join(COMPOSE, 'grafana', 'dashboards', 'tempo-s3-shard.json'), 'utf8')) as Mapping;
  const panels = (dashboard.panels as Mapping[]).filter((p) => p.type !== 'row');
  const variables = (dashboard.templating as Mapping).list as Mapping[];
  const exprs = [
    ...panels.flatMap((p) => (p.targets as Mapping[]).map((x) => ({ where: `panel "${String(p.title)}"`, expr: String(x.expr) }))),
    ...variables.filter((v) => v.type === 'query').map((v) => ({ where: `variable ${String(v.name)}`, expr: String(v.definition) })),
  ];
  t.ok(panels.length >= 8, `${panels.length} panels`);
  const used = new Set<string>();
  for (const { where, expr } of exprs) {
    // The proxy's own metrics, and the process figures under their usual names.
    const metrics = [...expr.matchAll(/\b((?:tempo_s3_shard|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]);
    t.ok(metrics.length > 0, `${where} reads a proxy metric`);
    for (const m of metrics) {
      used.add(m.replace(/_(bucket|sum|count)$/, (s) => (exposition.families.has(m.slice(0, -s.length)) ? '' : s)));
      t.ok(exposition.names.has(m), `${where}: ${m} is exported`);
    }
    // Prometheus adds job and instance at scrape time; le is the histogram's.
    const known = new Set([...exposition.labels, 'job', 'instance', 'le']);
    const labels = [
      ...[...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((s) => s.trim()).filter(Boolean)),
      ...[...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1])),
    ];
    for (const l of labels) t.ok(known.has(l), `${where}: label ${l} exists`);
    // Prometheus scrapes Tempo and Loki too, and they export the same process figures.
    if (/\b(?:process|nodejs)_/.test(expr)) t.match(expr, 'worker!=""', `${where}: only the proxy's processes`);
  }
  for (const family of exposition.families) t.ok(used.has(family), `the dashboard shows ${family}`);

  const datasource = variables.find((v) => v.type === 'datasource');
  t.equal(datasource?.query, 'prometheus', 'a Prometheus data source variable');
  for (const p of panels) {
    t.same(p.datasource, { type: 'prometheus', uid: `\${${String(datasource?.name)}}` }, `panel "${String(p.title)}" uses it`);
  }
  const ids = (dashboard.panels as Mapping[]).map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');

  // The image's health check, run as Docker runs it, with the URL each stack gives it.
  const dockerHealth = steps(dockerfileStages().at(-1)!, 'HEALTHCHECK')[0];
  const cmd = JSON.parse(/\bCMD\s+(\[.*\])\s*$/.exec(dockerHealth.args)![1]) as string[];
  const imageUrl = /^HEALTHCHECK_URL=(\S+)$/m.exec(steps(dockerfileStages().at(-1)!, 'ENV').map((e) => e.args).join('\n'))![1];
  const stackUrl = environmentOf(services(loadCompose(STACK, STACK_ENV).value)[PROXY]).HEALTHCHECK_URL;
  const probe = async (url: string) => {
    const local = new URL(url);
    t.equal(local.port, String(config.listen.port), `${url} is the port the proxy listens on`);
    local.port = String(addr.port);
    return (await run(cmd[0] === 'node' ? process.execPath : cmd[0], cmd.slice(1), { env: { ...process.env, HEALTHCHECK_URL: local.href }, timeoutMs: 20_000 })).status;
  };
  t.equal(new URL(imageUrl).pathname, '/readyz', 'the image checks readiness');
  t.equal(await probe(imageUrl), 1, 'unhealthy while no shard bucket can be reached (minio is not here)');
  t.equal(new URL(stackUrl).pathname, '/healthz', 'the Swarm stack checks liveness');
  t.equal(await probe(stackUrl), 0, 'healthy as soon as the proxy answers');
});

t.test('the Dockerfile builds a small non-root image of what exists', async (t) => {
  const stages = dockerfileStages();
  t.ok(stages.length >= 2, 'multi-stage');
  const build = stages[0];
  const runtime = stages.at(-1)!;
  t.match(build.from, /^node:(20|22)-slim$/, 'built on Node\'s slim image');
  const user = steps(runtime, 'USER').at(-1)?.args;
  t.ok(user !== undefined && !['root', '0', '0:0'].includes(user), `runs as ${user ?? 'root'}`);
  t.equal(steps(runtime, 'HEALTHCHECK').length, 1, 'has a HEALTHCHECK');
  const config = loadComposeConfig();
  t.same(steps(runtime, 'EXPOSE').map((e) => e.args), [String(config.listen.port)], 'exposes the port of the compose config');
  const entrypoint = JSON.parse(steps(runtime, 'ENTRYPOINT')[0].args) as string[];
  const command = JSON.parse(steps(runtime, 'CMD')[0].args) as string[];
  t.same(command, ['--config', CONFIG_TARGET], 'reads the config where the stacks mount it');

  const workdirs = (stage: Stage) => steps(stage, 'WORKDIR').map((w) => w.args);
  const buildDir = workdirs(build).at(-1)!;
  const appDir = workdirs(runtime).at(-1)!;
  // Lay out the runtime image in a directory: what comes from the build
  // stage is what the repository's build produces (make build), node_modules
  // only the runtime dependencies and theirs.
  const image = mkdtempSync(join(tmpdir(), 'tss-image-'));
  t.teardown(() => rmSync(image, { recursive: true, force: true }));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')).packages as Record<string, { dependencies?: Record<string, string>; dev?: boolean }>;
  const runtimeDeps = new Set<string>();
  const add = (name: string) => {
    if (runtimeDeps.has(name)) return;
    runtimeDeps.add(name);
    for (const d of Object.keys(lock[`node_modules/${name}`]?.dependencies ?? {})) add(d);
  };
  Object.keys(pkg.dependencies).forEach(add);
  for (const copy of steps(runtime, 'COPY').map((s) => parseCopy(s.args))) {
    t.equal(copy.sources.length, 1, `COPY ${copy.sources.join(' ')}: one source`);
    const dest = posix.isAbsolute(copy.dest) ? copy.dest : posix.join(appDir, copy.dest);
    t.ok(dest.startsWith(appDir + '/'), `${dest} is under ${appDir}`);
    const target = join(image, relative(appDir, dest));
    let source: string;
    if (copy.from === undefined) {
      source = copy.sources[0];
      t.notOk(dockerIgnored(source), `${source} is in the build context`);
    } else {
      t.equal(copy.from, build.name, `copies from the build stage`);
      source = posix.relative(buildDir, copy.sources[0]);
    }
    t.ok(existsSync(join(ROOT, source)), `${source} exists (after make build)`);
    if (source === 'node_modules') {
      t.ok(runtimeDeps.size >= 3 && [...runtimeDeps].every((d) => !lock[`node_modules/${d}`]?.dev), `runtime dependencies: ${[...runtimeDeps].join(', ')}`);
      for (const d of runtimeDeps) cpSync(join(ROOT, 'node_modules', d), join(target, d), { recursive: true, dereference: true });
    } else {
      mkdirSync(dirname(target), { recursive: true });
      cpSync(join(ROOT, source), target, { recursive: true });
    }
  }
  for (const copy of steps(build, 'COPY').map((s) => parseCopy(s.args))) {
    for (const s of copy.sources) {
      t.ok(existsSync(join(ROOT, s)), `build stage: ${s} exists`);
      t.notOk(dockerIgnored(s), `build stage: ${s} is in the build context`);
    }
  }
  for (const leak of ['node_modules', 'dist', 'test', '.git', 'compose/tempo-s3-shard.json', '.env']) {
    t.ok(dockerIgnored(leak), `.dockerignore keeps ${leak} out of the build context`);
  }

  t.equal(entrypoint[0], 'node');
  const entry = join(image, relative(appDir, entrypoint[1]));
  t.ok(existsSync(entry), `${entrypoint[1]} is in the image`);
  const version = await run(process.execPath, [entry, '--version'], { env: { PATH: process.env.PATH! }, cwd: image });
  t.equal(version.status, 0, `the image's entry point loads with only ${[...runtimeDeps].join(', ')}: ${version.stderr}`);
  t.equal(version.stdout, `${pkg.version}\n`, 'and finds package.json');
});

// systemd-analyze comes with systemd; a machine without it gets the structural checks alone, and the test says so.
const systemdAnalyze = (process.env.PATH ?? '').split(':').map((d) => join(d, 'systemd-analyze')).find((p) => existsSync(p));

t.test(systemdAnalyze
  ? 'the systemd unit: hardened, and systemd-analyze verify has nothing to say'
  : 'the systemd unit: hardened (structural check only: systemd-analyze is not installed)', async (t) => {
  const path = join(ROOT, 'deploy', 'tempo-s3-shard.service');
  const text = readFileSync(path, 'utf8');
  const sections = new Map<string, [string, string][]>();
  let current = '';
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) sections.set(current = header[1], []);
    else sections.get(current)!.push(line.split(/=(.*)/s).slice(0, 2) as [string, string]);
  }
  t.same([...sections.keys()], ['Unit', 'Service', 'Install']);
  const service = sections.get('Service')!;
  const values = (k: string) => service.filter(([key]) => key === k).map(([, v]) => v);
  for (const [k, v] of [['DynamicUser', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['NoNewPrivileges', 'yes'],
    ['PrivateTmp', 'yes'], ['Restart', 'on-failure'], ['EnvironmentFile', '-/etc/tempo-s3-shard/env']]) {
    t.same(values(k), [v], `${k}=${v}`);
  }
  t.same(values('MemoryDenyWriteExecute'), [], 'no MemoryDenyWriteExecute: it would break V8');
  const credentials = values('LoadCredential').map((v) => v.split(':')[0]);
  const env = Object.fromEntries(values('Environment').map((e) => e.split(/=(.*)/s).slice(0, 2)));
  for (const name of ['S3_ACCESS_KEY_ID_FILE', 'S3_SECRET_ACCESS_KEY_FILE']) {
    const m = /^%d\/(.+)$/.exec(env[name] ?? '');
    t.ok(m && credentials.includes(m[1]), `${name} names a LoadCredential= credential`);
  }
  const execStart = values('ExecStart')[0].split(/\s+/);
  t.same(execStart.slice(1), ['--config', CONFIG_TARGET], 'reads the config where the image does');

  if (!systemdAnalyze) return;

  // verify needs the ExecStart binary (npm install -g puts it there) and the
  // system's units: a root of its own holds both.
  const root = mkdtempSync(join(tmpdir(), 'tss-systemd-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const units = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(d))!;
  cpSync(units, join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  t.ok(existsSync(join(root, 'usr/lib/systemd/system/multi-user.target')), 'the system\'s units are in the root');
  const bin = join(root, execStart[0]);
  mkdirSync(dirname(bin), { recursive: true });
  writeFileSync(bin, '#!/bin/sh\n');
  chmodSync(bin, 0o755);
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
  cpSync(path, join(root, 'etc/systemd/system/tempo-s3-shard.service'));
  const r = await run(systemdAnalyze, ['verify', `--root=${root}`, 'tempo-s3-shard.service']);
  t.equal(r.status, 0, 'systemd-analyze verify exits 0');
  t.equal(r.stdout + r.stderr, '', 'and warns about nothing (unknown keys and bad values are only warnings)');
});

t.test('shell scripts pass bash -n', async (t) => {
  const scripts = readdirSync(COMPOSE).filter((f) => f.endsWith('.sh')).map((f) => join(COMPOSE, f));
  t.ok(scripts.some((s) => s.endsWith('smoke.sh')), 'smoke.sh is among them');
  for (const s of scripts) {
    const r = await run('bash', ['-n', s]);
    t.equal(r.status, 0, `${rel(s)}: ${r.stderr}`);
  }
});
