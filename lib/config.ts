// The proxy's configuration: the original tool's JSON file, the operators'
// environment overrides and Docker secret files, validated once at start-up
// and normalised into one typed shape. Every problem is a one-line
// ConfigError naming where the value came from; secrets never appear in it.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { PlacementKind } from './ring';

export interface Credentials { accessKeyId: string; secretAccessKey: string }
export interface ShardConfig {
  bucket: string;
  endpoint: string;
  region: string;
  credentials: Credentials;
  pathStyle: boolean;
  /** Its share of the keys under balanced placement (1 unless set). */
  weight: number;
}
export interface RingConfig { placement: PlacementKind; shards: ShardConfig[] }
/** The current ring, and the earlier ones (newest first) whose owners keys
 * may still sit at until a rebalance has moved them. */
export interface VirtualBucketConfig extends RingConfig { name: string; hashPrefix: string; previousRings: RingConfig[] }
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export interface Config {
  source: string;
  listen: { host: string; port: number };
  region: string;
  logLevel: LogLevel;
  createBuckets: boolean;
  virtualHostDomains: string[];
  virtualBuckets: VirtualBucketConfig[];
  clients: Credentials[];
  allowAnonymous: boolean;
  limits: Limits;
  /** PEM files for an HTTPS listener; absent: plain HTTP. */
  tls?: { certFile: string; keyFile: string };
}
// Every wait is bounded, so a stalled peer costs a socket for a while, never
// memory or a hung request.
export interface Limits {
  backendTimeoutMs: number;      // to a backend's response headers
  backendIdleTimeoutMs: number;  // between two reads of a backend body
  clientIdleTimeoutMs: number;   // a client connection that moves no byte
  maxConnections: number;        // concurrent client connections
  shutdownGraceMs: number;       // in-flight requests finishing after SIGTERM
}

export class ConfigError extends Error {
  readonly file: string;
  readonly field: string;

  constructor(file: string, field: string, detail: string) {
    const where = field && field !== file ? `${file}: ${field}` : file;
    // A path or a JSON key may hold a newline; the message must stay one line.
    super(`${where}: ${detail}`.replace(/[\r\n]+/g, ' '));
    this.name = 'ConfigError';
    this.file = file;
    this.field = field;
  }
}

const TOP_KEYS = [
  'listen_addr', 'endpoint', 'access_key_id', 'secret_access_key', 'access_key_id_file', 'secret_access_key_file',
  'use_ssl', 'region', 'buckets', 'log_level', 'virtual_bucket', 'shards', 'create_buckets', 'virtual_buckets',
  'hash_prefix', 'virtual_host_domains', 'force_path_style', 'clients', 'allow_anonymous',
  'backend_timeout_seconds', 'backend_idle_timeout_seconds', 'client_idle_timeout_seconds', 'max_connections',
  'shutdown_grace_seconds', 'placement', 'previous_rings', 'tls_cert_file', 'tls_key_file',
];
const SHARD_KEYS = [
  'bucket', 'endpoint', 'region', 'access_key_id', 'secret_access_key', 'access_key_id_file', 'secret_access_key_file',
  'weight',
];
const VIRTUAL_BUCKET_KEYS = ['name', 'buckets', 'shards', 'hash_prefix', 'placement', 'previous_rings'];
const RING_KEYS = ['placement', 'buckets', 'shards'];
const PLACEMENTS: readonly PlacementKind[] = ['ring', 'balanced'];
const CLIENT_KEYS = ['access_key_id', 'secret_access_key', 'secret_access_key_file'];
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
// The admin routes own these paths, so no virtual bucket may shadow them.
const RESERVED_NAMES = ['metrics', 'healthz', 'readyz'];
const HOSTNAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i;

export function loadConfig(opts: { file?: string; env?: Record<string, string | undefined> }): Config {
  return normalise(readSources(opts.file, opts.env ?? process.env));
}

export function parseListenAddr(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${q(s)} is not host:port (":8080", "127.0.0.1:8080", "[::1]:8080")`);
  if (m[1] !== undefined && isIP(m[1]) !== 6) throw new Error(`${q(s)}: "${m[1]}" is not an IPv6 address`);
  const host = m[1] ?? m[2];
  if (host !== '' && !isIP(host) && !HOSTNAME.test(host)) throw new Error(`${q(s)}: "${host}" is not a host name or address`);
  return { host, port };
}

// ---- pass 1: gather raw values and remember where each top-level one came from

interface Origin { file: string; field?: string }
interface Sources {
  raw: Record<string, unknown>;
  source: string;
  fromFile: boolean;
  baseDir: string;
  origins: Map<string, Origin>;
}

function readSources(file: string | undefined, env: Record<string, string | undefined>): Sources {
  let raw: Record<string, unknown> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, '', `cannot read the config file (${errorCode(err)})`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // V8's message quotes the surrounding text, which may be a secret: report the position only.
      throw new ConfigError(file, '', `invalid JSON${jsonPosition(text, err)}`);
    }
    if (!isObject(parsed)) throw new ConfigError(file, '', 'must hold a JSON object');
    raw = parsed;
  }
  const origins = new Map<string, Origin>();
  const set = (key: string, value: unknown, origin: Origin) => {
    raw[key] = value;
    origins.set(key, origin);
  };
  // Compose files often pass `VAR=${VAR}`, which sets an unset variable to '': treat it as unset.
  const get = (name: string) => (env[name] === '' ? undefined : env[name]);

  for (const [name, key] of [['S3_ENDPOINT', 'endpoint'], ['S3_REGION', 'region'], ['S3_VIRTUAL_BUCKET', 'virtual_bucket']]) {
    const v = get(name);
    if (v !== undefined) set(key, v, { file: name });
  }
  for (const [name, key] of [['S3_ACCESS_KEY_ID', 'access_key_id'], ['S3_SECRET_ACCESS_KEY', 'secret_access_key']]) {
    const v = get(name);
    const path = get(`${name}_FILE`);
    if (v !== undefined && path !== undefined) {
      throw new ConfigError(`${name}_FILE`, `${name}_FILE`, `cannot be combined with ${name}; set one of them`);
    }
    if (v === undefined && path === undefined) continue;
    delete raw[`${key}_file`];
    if (v !== undefined) set(key, v, { file: name });
    else set(key, readSecret(resolve(path!), `${name}_FILE`), { file: resolve(path!), field: `${name}_FILE` });
  }
  const pathStyle = get('S3_FORCE_PATH_STYLE');
  if (pathStyle !== undefined) set('force_path_style', envBool('S3_FORCE_PATH_STYLE', pathStyle), { file: 'S3_FORCE_PATH_STYLE' });
  const insecure = get('S3_INSECURE');
  if (insecure !== undefined) set('use_ssl', !envBool('S3_INSECURE', insecure), { file: 'S3_INSECURE' });
  const buckets = get('S3_BUCKETS');
  if (buckets !== undefined) set('buckets', buckets.split(',').map((b) => b.trim()), { file: 'S3_BUCKETS' });

  return {
    raw,
    source: file ?? 'environment',
    fromFile: file !== undefined,
    baseDir: file === undefined ? process.cwd() : dirname(resolve(file)),
    origins,
  };
}

function envBool(name: string, v: string): boolean {
  const s = v.toLowerCase();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  throw new ConfigError(name, name, `${q(v)} is not one of true, false, 1, 0`);
}

function readSecret(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/[\r\n]+$/, '');
  } catch (err) {
    throw new ConfigError(path, field, `cannot read the secret file (${errorCode(err)})`);
  }
}

// ---- pass 2: validate and normalise

type Fail = (field: string, detail: string) => never;

// Typed access to one JSON object's fields; absent fields read as undefined.
class Fields {
  constructor(readonly obj: Record<string, unknown>, readonly path: string, readonly fail: Fail) {}

  at(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined;
  }
  str(key: string): string | undefined {
    const v = this.obj[key];
    if (v !== undefined && typeof v !== 'string') this.fail(this.at(key), 'must be a string');
    return v as string | undefined;
  }
  positive(key: string): number | undefined {
    const v = this.obj[key];
    if (v !== undefined && (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))) this.fail(this.at(key), 'must be a positive number');
    return v as number | undefined;
  }
  bool(key: string): boolean | undefined {
    const v = this.obj[key];
    if (v !== undefined && typeof v !== 'boolean') this.fail(this.at(key), 'must be true or false');
    return v as boolean | undefined;
  }
  list(key: string): unknown[] | undefined {
    const v = this.obj[key];
    if (v !== undefined && !Array.isArray(v)) this.fail(this.at(key), 'must be an array');
    return v as unknown[] | undefined;
  }
  strList(key: string): string[] | undefined {
    const v = this.list(key);
    v?.forEach((s, i) => typeof s !== 'string' && this.fail(`${this.at(key)}[${i}]`, 'must be a string'));
    return v as string[] | undefined;
  }
}

interface Inherited { endpoint?: string; region: string; accessKeyId?: string; secretAccessKey?: string; weight?: number }

function normalise({ raw, source, baseDir, origins, fromFile }: Sources): Config {
  const fail: Fail = (field, detail) => {
    const origin = origins.get(field.split(/[.[]/)[0]);
    throw new ConfigError(origin?.file ?? source, origin?.field ?? field, detail);
  };
  const fields = (v: unknown, path: string, allowed: readonly string[]): Fields => {
    if (!isObject(v)) return fail(path, 'must be an object');
    for (const key of Object.keys(v)) if (!allowed.includes(key)) fail(path ? `${path}.${key}` : key, 'is not a known field');
    return new Fields(v, path, fail);
  };
  // A secret given either inline or as `<key>_file`, read relative to the config file.
  const secret = (f: Fields, key: string): string | undefined => {
    const inline = f.str(key);
    const ref = f.str(`${key}_file`);
    if (inline !== undefined && ref !== undefined) fail(f.at(`${key}_file`), `cannot be combined with ${key}`);
    const value = ref === undefined ? inline : readSecret(resolve(baseDir, ref), f.at(`${key}_file`));
    if (value === '') fail(f.at(ref === undefined ? key : `${key}_file`), ref === undefined ? 'is empty' : 'names an empty file');
    return value;
  };
  const checkRegion = (region: string, path: string) => {
    if (!/^[a-z0-9][a-z0-9_-]*$/i.test(region)) fail(path, `${q(region)} is not a region name`);
    return region;
  };

  const top = fields(raw, '', TOP_KEYS);
  // The Go tool read a config.json without use_ssl as plain HTTP to a bare
  // host; from the environment alone, S3_INSECURE unset means TLS, as
  // Tempo's `insecure` does.
  const useSsl = top.bool('use_ssl') ?? !fromFile;
  const pathStyle = top.bool('force_path_style') ?? true;
  const endpoint = top.str('endpoint');
  const inherited: Inherited = {
    endpoint: endpoint === undefined ? undefined : normaliseEndpoint(endpoint, useSsl, 'endpoint', fail),
    region: checkRegion(top.str('region') ?? 'us-east-1', 'region'),
    accessKeyId: secret(top, 'access_key_id'),
    secretAccessKey: secret(top, 'secret_access_key'),
  };

  // Two virtual buckets (or one listed twice) on one backend bucket would overwrite each other's objects.
  const usedBy = new Map<string, string>();
  const shard = (bucket: string, path: string, own: Partial<Inherited>): ShardConfig => {
    checkBucketName(bucket, path, fail);
    const ep = own.endpoint ?? inherited.endpoint ?? fail('endpoint', 'is required (set endpoint or S3_ENDPOINT)');
    const accessKeyId = own.accessKeyId ?? inherited.accessKeyId
      ?? fail('access_key_id', 'is required; anonymous backends are not supported');
    const secretAccessKey = own.secretAccessKey ?? inherited.secretAccessKey
      ?? fail('secret_access_key', 'is required; anonymous backends are not supported');
    const previous = usedBy.get(`${ep}/${bucket}`);
    if (previous !== undefined) fail(path, `${q(bucket)} on ${ep} is already used by ${previous}`);
    usedBy.set(`${ep}/${bucket}`, path);
    return {
      bucket, endpoint: ep, region: own.region ?? inherited.region, credentials: { accessKeyId, secretAccessKey }, pathStyle,
      weight: own.weight ?? 1,
    };
  };
  const placementOf = (f: Fields, fallback: PlacementKind): PlacementKind => {
    const p = f.str('placement') ?? fallback;
    if (!(PLACEMENTS as readonly string[]).includes(p)) fail(f.at('placement'), `${q(p)} is not one of ${PLACEMENTS.join(', ')}`);
    return p as PlacementKind;
  };

  interface Defaults { hashPrefix: string; placement: PlacementKind }
  const virtualBucket = (f: Fields, name: string, namePath: string, defaults: Defaults): VirtualBucketConfig => {
    checkBucketName(name, namePath, fail);
    if (RESERVED_NAMES.includes(name)) fail(namePath, `${q(name)} is reserved for the admin routes`);
    // An earlier ring names a bucket of a later one by its name alone (and
    // may give it another weight); a bucket only earlier rings know is still
    // a shard, defined where it first appears.
    const defined = new Map<string, ShardConfig>();
    const member = (entry: unknown, path: string, kind: PlacementKind): ShardConfig => {
      if (typeof entry === 'string') return defined.get(entry) ?? shard(entry, path, {});
      const s = fields(entry, path, SHARD_KEYS);
      const bucket = s.str('bucket') ?? fail(s.at('bucket'), 'is required');
      const weight = s.positive('weight');
      if (weight !== undefined && kind !== 'balanced') fail(s.at('weight'), 'needs placement "balanced": the original ring has no weights');
      const known = defined.get(bucket);
      if (known) {
        const other = Object.keys(s.obj).find((k) => k !== 'bucket' && k !== 'weight');
        if (other) fail(s.at(other), `${q(bucket)} is already defined: name it by bucket (and weight) alone`);
        return { ...known, weight: weight ?? known.weight };
      }
      const ep = s.str('endpoint');
      const region = s.str('region');
      return shard(bucket, s.at('bucket'), {
        endpoint: ep === undefined ? undefined : normaliseEndpoint(ep, useSsl, s.at('endpoint'), fail),
        region: region === undefined ? undefined : checkRegion(region, s.at('region')),
        accessKeyId: secret(s, 'access_key_id'),
        secretAccessKey: secret(s, 'secret_access_key'),
        weight,
      });
    };
    // A ring's members in `buckets` (names) or `shards` (objects).
    const ring = (r: Fields, kind: PlacementKind, what: string): ShardConfig[] => {
      if (r.has('buckets') && r.has('shards')) fail(r.at('buckets'), 'cannot be combined with shards');
      const key = r.has('shards') ? 'shards' : 'buckets';
      const entries = key === 'shards' ? r.list(key) : r.strList(key);
      if (entries === undefined) return fail(r.at('buckets'), `is required: list the ${what} in buckets or shards`);
      if (entries.length === 0) fail(r.at(key), 'must not be empty');
      entries.forEach((e, i) => key === 'shards' && !isObject(e) && fail(`${r.at(key)}[${i}]`, 'must be an object'));
      return members(entries, r.at(key), kind);
    };
    const members = (entries: unknown[], path: string, kind: PlacementKind): ShardConfig[] => {
      const shards = entries.map((e, i) => member(e, `${path}[${i}]`, kind));
      // Placement goes by bucket name, as the original's did: two members of
      // one name would be one point set.
      shards.forEach((s, i) => {
        const j = shards.findIndex((o) => o.bucket === s.bucket);
        if (j < i) fail(`${path}[${i}]`, `${q(s.bucket)} is already shard ${j} of this ring`);
      });
      for (const s of shards) if (!defined.has(s.bucket)) defined.set(s.bucket, s);
      return shards;
    };

    const placement = placementOf(f, defaults.placement);
    const shards = ring(f, placement, 'backend buckets');
    const previousRings = (f.list('previous_rings') ?? []).map((g, i): RingConfig => {
      const path = `${f.at('previous_rings')}[${i}]`;
      if (Array.isArray(g)) {
        if (g.length === 0) fail(path, 'must not be empty');
        return { placement, shards: members(g, path, placement) };
      }
      const r = fields(g, path, RING_KEYS);
      const kind = placementOf(r, placement);
      return { placement: kind, shards: ring(r, kind, 'buckets of that ring') };
    });
    return { name, hashPrefix: f.str('hash_prefix') ?? defaults.hashPrefix, placement, shards, previousRings };
  };

  const defaults = { hashPrefix: top.str('hash_prefix') ?? '', placement: placementOf(top, 'ring') };
  const list = top.list('virtual_buckets');
  let virtualBuckets: VirtualBucketConfig[];
  if (list === undefined) {
    virtualBuckets = [virtualBucket(top, top.str('virtual_bucket') ?? 'proxy-bucket', 'virtual_bucket', { ...defaults, hashPrefix: '' })];
  } else {
    for (const key of ['virtual_bucket', 'buckets', 'shards', 'previous_rings']) {
      if (top.has(key)) fail(key, 'cannot be combined with virtual_buckets');
    }
    if (list.length === 0) fail('virtual_buckets', 'must not be empty');
    const names = new Map<string, string>();
    virtualBuckets = list.map((v, i) => {
      const f = fields(v, `virtual_buckets[${i}]`, VIRTUAL_BUCKET_KEYS);
      const name = f.str('name') ?? fail(f.at('name'), 'is required');
      const previous = names.get(name);
      if (previous !== undefined) fail(f.at('name'), `${q(name)} is already the name of ${previous}`);
      names.set(name, f.path);
      return virtualBucket(f, name, f.at('name'), defaults);
    });
  }

  const clients = (top.list('clients') ?? []).map((c, i) => {
    const f = fields(c, `clients[${i}]`, CLIENT_KEYS);
    return {
      accessKeyId: secret(f, 'access_key_id') ?? fail(f.at('access_key_id'), 'is required'),
      secretAccessKey: secret(f, 'secret_access_key') ?? fail(f.at('secret_access_key'), 'is required'),
    };
  });
  clients.forEach((c, i) => {
    const j = clients.findIndex((d) => d.accessKeyId === c.accessKeyId);
    if (j < i) fail(`clients[${i}].access_key_id`, `is the same as clients[${j}].access_key_id`);
  });
  const allowAnonymous = top.bool('allow_anonymous') ?? clients.length === 0;
  if (!allowAnonymous && clients.length === 0) fail('allow_anonymous', 'is false but no clients are configured, so every request would be refused');

  const logLevel = top.str('log_level') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) fail('log_level', `${q(logLevel)} is not one of ${LOG_LEVELS.join(', ')}`);

  let listen: Config['listen'];
  try {
    listen = parseListenAddr(top.str('listen_addr') ?? ':8080');
  } catch (err) {
    return fail('listen_addr', (err as Error).message);
  }

  const virtualHostDomains = (top.strList('virtual_host_domains') ?? []).map((d, i) => {
    const domain = d.toLowerCase().replace(/\.$/, '');
    if (!HOSTNAME.test(domain)) fail(`virtual_host_domains[${i}]`, `${q(d)} is not a domain name`);
    return domain;
  });

  return {
    source,
    listen,
    region: inherited.region,
    logLevel: logLevel as LogLevel,
    createBuckets: top.bool('create_buckets') ?? true,
    virtualHostDomains,
    virtualBuckets,
    clients,
    allowAnonymous,
    tls: tlsFiles(top, baseDir, fail),
    limits: {
      backendTimeoutMs: (top.positive('backend_timeout_seconds') ?? 120) * 1000,
      backendIdleTimeoutMs: (top.positive('backend_idle_timeout_seconds') ?? 60) * 1000,
      clientIdleTimeoutMs: (top.positive('client_idle_timeout_seconds') ?? 120) * 1000,
      maxConnections: Math.floor(top.positive('max_connections') ?? 4096),
      shutdownGraceMs: (top.positive('shutdown_grace_seconds') ?? 25) * 1000,
    },
  };
}

function tlsFiles(top: Fields, baseDir: string, fail: Fail): Config['tls'] {
  const cert = top.str('tls_cert_file');
  const key = top.str('tls_key_file');
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) fail(cert === undefined ? 'tls_cert_file' : 'tls_key_file', 'is required with the other tls_* file');
  const files = { certFile: resolve(baseDir, cert!), keyFile: resolve(baseDir, key!) };
  for (const [field, path] of [['tls_cert_file', files.certFile], ['tls_key_file', files.keyFile]]) {
    try {
      readFileSync(path);
    } catch (err) {
      fail(field, `cannot read ${q(path)} (${errorCode(err)})`);
    }
  }
  return files;
}

// An endpoint is an origin: a URL's scheme decides TLS, a bare host[:port] takes it from use_ssl.
function normaliseEndpoint(s: string, useSsl: boolean, path: string, fail: Fail): string {
  if (s.includes('@')) fail(path, 'must not contain credentials; use access_key_id and secret_access_key');
  let url: URL;
  try {
    url = new URL(s.includes('://') ? s : `${useSsl ? 'https' : 'http'}://${s}`);
  } catch {
    return fail(path, `${q(s)} is neither a URL nor host[:port]`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(path, `${q(s)}: the scheme must be http or https`);
  if (url.pathname !== '/' || /[?#]/.test(s)) fail(path, `${q(s)} must not have a path, query or fragment`);
  return url.origin;
}

function checkBucketName(name: string, path: string, fail: Fail): void {
  const valid = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)
    && !name.includes('..')
    && !/^\d+\.\d+\.\d+\.\d+$/.test(name);
  if (!valid) fail(path, `${q(name)} is not a valid S3 bucket name`);
}

function jsonPosition(text: string, err: unknown): string {
  const m = /at position (\d+)/.exec((err as Error).message);
  if (!m) return '';
  const before = text.slice(0, Number(m[1])).split('\n');
  return ` at line ${before.length} column ${before[before.length - 1].length + 1}`;
}

function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'unknown error';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function q(s: string): string {
  return JSON.stringify(s);
}
