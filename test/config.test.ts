import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseListenAddr, ConfigError, type Config } from '../lib/config';

const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const AKID = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const OTHER_SECRET = 'sEcReT-Other-0123456789abcdefGHIJ';
const FILE_SECRET = 'from-a-docker-secret-file-XYZ';
const CLIENT_SECRET = 'client-secret-value-QRSTUV';
const ALL_SECRETS = [SECRET, OTHER_SECRET, FILE_SECRET, CLIENT_SECRET];

let n = 0;
function write(content: string, name = `f${++n}`): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}
function writeConfig(obj: unknown): string {
  return write(JSON.stringify(obj, null, 2), `config${++n}.json`);
}

// The minimum valid backend settings, for cases about something else.
const base = { endpoint: 'http://127.0.0.1:9000', access_key_id: AKID, secret_access_key: SECRET, buckets: ['b-one', 'b-two', 'b-three'] };
const load = (obj: unknown, env: Record<string, string> = {}): Config => loadConfig({ file: writeConfig(obj), env });

// tap's Test type, without depending on its internal module paths.
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

function expectError(
  t: Test, fn: () => unknown, where: { file: string; field: string }, extra?: RegExp,
): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ConfigError)) {
    t.fail(`expected a ConfigError, got ${String(err)}`);
    return;
  }
  t.equal(err.file, where.file, 'file');
  t.equal(err.field, where.field, 'field');
  t.notMatch(err.message, /[\r\n]/, 'one line');
  t.ok(err.message.startsWith(`${where.file}: `), `message starts with the file: ${err.message}`);
  if (where.field) t.ok(err.message.includes(where.field), 'message names the field');
  for (const s of ALL_SECRETS) t.notOk(err.message.includes(s), 'no secret in the message');
  t.notOk(err.message.includes(AKID), 'no access key id in the message');
  if (extra) t.match(err.message, extra);
}

t.test('the original tool example config', async (t) => {
  const file = writeConfig({
    listen_addr: ':8080',
    endpoint: 'https://s3.amazonaws.com',
    access_key_id: AKID,
    secret_access_key: SECRET,
    use_ssl: true,
    region: 'us-east-1',
    buckets: ['tempo-shard1', 'tempo-shard2', 'tempo-shard3'],
  });
  const shard = (bucket: string) => ({
    bucket,
    endpoint: 'https://s3.amazonaws.com',
    region: 'us-east-1',
    credentials: { accessKeyId: AKID, secretAccessKey: SECRET },
    pathStyle: true,
    weight: 1,
  });
  t.same(loadConfig({ file, env: {} }), {
    source: file,
    listen: { host: '', port: 8080 },
    region: 'us-east-1',
    logLevel: 'info',
    createBuckets: true,
    virtualHostDomains: [],
    virtualBuckets: [{
      name: 'proxy-bucket', hashPrefix: '', placement: 'ring', previousRings: [],
      shards: [shard('tempo-shard1'), shard('tempo-shard2'), shard('tempo-shard3')],
    }],
    clients: [],
    allowAnonymous: true,
    limits: { backendTimeoutMs: 120_000, backendIdleTimeoutMs: 60_000, clientIdleTimeoutMs: 120_000, maxConnections: 4096, shutdownGraceMs: 25_000 },
  });
});

t.test('defaults', async (t) => {
  const c = load({ endpoint: 's3.example.com', access_key_id: AKID, secret_access_key: SECRET, buckets: ['abc'] });
  t.same(c.listen, { host: '', port: 8080 });
  t.equal(c.region, 'us-east-1');
  t.equal(c.virtualBuckets[0].shards[0].region, 'us-east-1');
  t.equal(c.virtualBuckets[0].shards[0].endpoint, 'http://s3.example.com', 'a config file without use_ssl: plain HTTP, as the Go tool read it');
  const fromEnv = loadConfig({ env: { S3_ENDPOINT: 's3.example.com', S3_ACCESS_KEY_ID: AKID, S3_SECRET_ACCESS_KEY: SECRET, S3_BUCKETS: 'abc' } });
  t.equal(fromEnv.virtualBuckets[0].shards[0].endpoint, 'https://s3.example.com', 'the environment alone without S3_INSECURE: TLS, as Tempo reads insecure');
  t.equal(c.virtualBuckets[0].shards[0].pathStyle, true);
  t.equal(c.virtualBuckets[0].name, 'proxy-bucket');
  t.equal(c.logLevel, 'info');
  t.equal(c.createBuckets, true);
});

t.test('endpoint forms', async (t) => {
  const endpointOf = (endpoint: string, extra: object = {}) =>
    load({ ...base, endpoint, ...extra }).virtualBuckets[0].shards[0].endpoint;
  t.equal(endpointOf('minio:9000', { use_ssl: false }), 'http://minio:9000', 'bare host + use_ssl false → http');
  t.equal(endpointOf('minio:9000', { use_ssl: true }), 'https://minio:9000');
  t.equal(endpointOf('http://minio:9000', { use_ssl: true }), 'http://minio:9000', 'URL scheme wins over use_ssl');
  t.equal(endpointOf('https://s3.example.com', { use_ssl: false }), 'https://s3.example.com', 'URL scheme wins over use_ssl');
  t.equal(endpointOf('https://s3.example.com/'), 'https://s3.example.com', 'trailing slash stripped');
  t.equal(endpointOf('s3.example.com/', { use_ssl: true }), 'https://s3.example.com', 'trailing slash stripped from a bare host');
  t.equal(endpointOf('https://s3.example.com:443'), 'https://s3.example.com', 'default port implied');
  t.equal(endpointOf('http://minio:80'), 'http://minio', 'default port implied');
  t.equal(endpointOf('HTTP://MinIO.Local:9000'), 'http://minio.local:9000');
  t.equal(endpointOf('[::1]:9000', { use_ssl: false }), 'http://[::1]:9000');

  for (const bad of ['https://s3.example.com/bucket', 'http://minio:9000/?x=1', 'http://minio:9000?', 'minio:9000/path',
    'ftp://minio', 'http://', 'minio:99999']) {
    const file = writeConfig({ ...base, endpoint: bad });
    expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'endpoint' });
  }
  const file = writeConfig({ ...base, endpoint: `https://${AKID}:${SECRET}@s3.example.com` });
  expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'endpoint' }, /credentials/);
});

t.test('environment overrides', async (t) => {
  const file = writeConfig({ ...base, region: 'eu-west-1', use_ssl: true, force_path_style: true });
  const c = loadConfig({
    file,
    env: {
      S3_ENDPOINT: 'minio.internal:9000',
      S3_REGION: 'eu-central-1',
      S3_ACCESS_KEY_ID: 'ENVKEY',
      S3_SECRET_ACCESS_KEY: OTHER_SECRET,
      S3_FORCE_PATH_STYLE: 'false',
      S3_INSECURE: 'true',
      S3_BUCKETS: 'x-one, x-two',
      S3_VIRTUAL_BUCKET: 'tempo',
      UNRELATED: 'ignored',
    },
  });
  t.equal(c.source, file);
  t.equal(c.region, 'eu-central-1');
  t.same(c.virtualBuckets.map((vb) => vb.name), ['tempo']);
  t.same(c.virtualBuckets[0].shards, ['x-one', 'x-two'].map((bucket) => ({
    bucket,
    endpoint: 'http://minio.internal:9000',
    region: 'eu-central-1',
    credentials: { accessKeyId: 'ENVKEY', secretAccessKey: OTHER_SECRET },
    pathStyle: false,
    weight: 1,
  })));

  const styleOf = (v: string) => load(base, { S3_FORCE_PATH_STYLE: v }).virtualBuckets[0].shards[0].pathStyle;
  t.equal(styleOf('0'), false);
  t.equal(styleOf('1'), true);
  t.equal(styleOf('true'), true);
  t.equal(load({ ...base, force_path_style: false }, { S3_FORCE_PATH_STYLE: 'TRUE' }).virtualBuckets[0].shards[0].pathStyle, true);

  const endpointOf = (endpoint: string, env: Record<string, string>, extra: object = {}) =>
    load({ ...base, endpoint, ...extra }, env).virtualBuckets[0].shards[0].endpoint;
  t.equal(endpointOf('minio:9000', { S3_INSECURE: '1' }, { use_ssl: true }), 'http://minio:9000', 'S3_INSECURE overrides use_ssl');
  t.equal(endpointOf('minio:9000', { S3_INSECURE: 'false' }, { use_ssl: false }), 'https://minio:9000', 'S3_INSECURE=false means TLS');
  t.equal(endpointOf('https://s3.example.com', { S3_INSECURE: 'true' }), 'https://s3.example.com', 'a URL scheme still wins');
  t.equal(endpointOf('minio:9000', { S3_ENDPOINT: '' }, { use_ssl: false }), 'http://minio:9000', 'an empty variable is unset');

  const file2 = writeConfig(base);
  expectError(t, () => loadConfig({ file: file2, env: { S3_INSECURE: 'yes' } }), { file: 'S3_INSECURE', field: 'S3_INSECURE' }, /"yes"/);
  expectError(t, () => loadConfig({ file: file2, env: { S3_FORCE_PATH_STYLE: 'no' } }),
    { file: 'S3_FORCE_PATH_STYLE', field: 'S3_FORCE_PATH_STYLE' });
  expectError(t, () => loadConfig({ file: file2, env: { S3_ENDPOINT: 'http://minio/x' } }), { file: 'S3_ENDPOINT', field: 'endpoint' });
  expectError(t, () => loadConfig({ file: file2, env: { S3_REGION: 'us/east' } }), { file: 'S3_REGION', field: 'region' });
  expectError(t, () => loadConfig({ file: file2, env: { S3_BUCKETS: 'good-one,Bad_Two' } }),
    { file: 'S3_BUCKETS', field: 'buckets[1]' }, /"Bad_Two" is not a valid S3 bucket name/);
  expectError(t, () => loadConfig({ file: file2, env: { S3_VIRTUAL_BUCKET: 'metrics' } }),
    { file: 'S3_VIRTUAL_BUCKET', field: 'virtual_bucket' }, /reserved/);
});

t.test('environment only, no file', async (t) => {
  const c = loadConfig({
    env: { S3_ENDPOINT: 'http://minio:9000', S3_ACCESS_KEY_ID: AKID, S3_SECRET_ACCESS_KEY: SECRET, S3_BUCKETS: 'one-1,two-2' },
  });
  t.equal(c.source, 'environment');
  t.same(c.virtualBuckets[0].shards.map((s) => [s.bucket, s.endpoint]), [['one-1', 'http://minio:9000'], ['two-2', 'http://minio:9000']]);

  expectError(t, () => loadConfig({ env: { S3_ACCESS_KEY_ID: AKID, S3_SECRET_ACCESS_KEY: SECRET, S3_BUCKETS: 'one-1' } }),
    { file: 'environment', field: 'endpoint' }, /required/);
  expectError(t, () => loadConfig({ env: { S3_ENDPOINT: 'minio', S3_ACCESS_KEY_ID: AKID, S3_SECRET_ACCESS_KEY: SECRET } }),
    { file: 'environment', field: 'buckets' });
  expectError(t, () => loadConfig({ env: { S3_ENDPOINT: 'minio', S3_SECRET_ACCESS_KEY: SECRET, S3_BUCKETS: 'one-1' } }),
    { file: 'environment', field: 'access_key_id' });
  expectError(t, () => loadConfig({ env: { S3_ENDPOINT: 'minio', S3_ACCESS_KEY_ID: AKID, S3_BUCKETS: 'one-1' } }),
    { file: 'environment', field: 'secret_access_key' });
});

t.test('env defaults to process.env', async (t) => {
  const saved = process.env.S3_REGION;
  process.env.S3_REGION = 'ap-south-2';
  t.teardown(() => {
    if (saved === undefined) delete process.env.S3_REGION;
    else process.env.S3_REGION = saved;
  });
  t.equal(loadConfig({ file: writeConfig(base) }).region, 'ap-south-2');
});

t.test('*_FILE environment variables', async (t) => {
  const keyFile = write('FILEKEY\n');
  const secretFile = write(`${FILE_SECRET}\n`);
  const c = load(base, { S3_ACCESS_KEY_ID_FILE: keyFile, S3_SECRET_ACCESS_KEY_FILE: secretFile });
  t.same(c.virtualBuckets[0].shards[0].credentials, { accessKeyId: 'FILEKEY', secretAccessKey: FILE_SECRET }, 'trailing newline trimmed');
  t.same(load(base, { S3_SECRET_ACCESS_KEY_FILE: write(`${FILE_SECRET}\r\n`) }).virtualBuckets[0].shards[0].credentials.secretAccessKey,
    FILE_SECRET, 'CRLF trimmed');
  t.same(load({ ...base, secret_access_key: undefined, secret_access_key_file: '/nonexistent' },
    { S3_SECRET_ACCESS_KEY_FILE: secretFile }).virtualBuckets[0].shards[0].credentials.secretAccessKey,
  FILE_SECRET, 'the variable replaces the file\'s secret_access_key_file');

  const file = writeConfig(base);
  expectError(t, () => loadConfig({ file, env: { S3_SECRET_ACCESS_KEY: OTHER_SECRET, S3_SECRET_ACCESS_KEY_FILE: secretFile } }),
    { file: 'S3_SECRET_ACCESS_KEY_FILE', field: 'S3_SECRET_ACCESS_KEY_FILE' }, /S3_SECRET_ACCESS_KEY\b/);
  expectError(t, () => loadConfig({ file, env: { S3_ACCESS_KEY_ID: 'X', S3_ACCESS_KEY_ID_FILE: keyFile } }),
    { file: 'S3_ACCESS_KEY_ID_FILE', field: 'S3_ACCESS_KEY_ID_FILE' });
  const missing = join(dir, 'no-such-secret');
  expectError(t, () => loadConfig({ file, env: { S3_SECRET_ACCESS_KEY_FILE: missing } }),
    { file: missing, field: 'S3_SECRET_ACCESS_KEY_FILE' }, /ENOENT/);
  const empty = write('\n');
  expectError(t, () => loadConfig({ file, env: { S3_SECRET_ACCESS_KEY_FILE: empty } }),
    { file: empty, field: 'S3_SECRET_ACCESS_KEY_FILE' }, /empty/);
});

t.test('*_file fields in the config file', async (t) => {
  writeFileSync(join(dir, 'relative-secret'), `${FILE_SECRET}\n`);
  const c = load({
    endpoint: 'http://minio:9000',
    access_key_id_file: write('TOPKEY\n'),
    secret_access_key_file: 'relative-secret',
    shards: [{ bucket: 'aaa' }, { bucket: 'bbb', secret_access_key_file: write(`${OTHER_SECRET}\n`) }],
    clients: [{ access_key_id: 'client1', secret_access_key_file: write(`${CLIENT_SECRET}\n`) }],
  });
  t.same(c.virtualBuckets[0].shards.map((s) => s.credentials), [
    { accessKeyId: 'TOPKEY', secretAccessKey: FILE_SECRET },
    { accessKeyId: 'TOPKEY', secretAccessKey: OTHER_SECRET },
  ], 'relative paths are read from the config file\'s directory');
  t.same(c.clients, [{ accessKeyId: 'client1', secretAccessKey: CLIENT_SECRET }]);

  const unreadable = join(dir, 'absent-secret');
  const file = writeConfig({ ...base, secret_access_key: undefined, secret_access_key_file: unreadable });
  expectError(t, () => loadConfig({ file, env: {} }), { file: unreadable, field: 'secret_access_key_file' });
  const both = writeConfig({ ...base, secret_access_key_file: unreadable });
  expectError(t, () => loadConfig({ file: both, env: {} }), { file: both, field: 'secret_access_key_file' });
  const emptySecret = writeConfig({ ...base, secret_access_key: undefined, secret_access_key_file: write('\n') });
  expectError(t, () => loadConfig({ file: emptySecret, env: {} }), { file: emptySecret, field: 'secret_access_key_file' }, /empty file/);
  const shardFile = writeConfig({ ...base, buckets: undefined, shards: [{ bucket: 'aaa', access_key_id_file: unreadable }] });
  expectError(t, () => loadConfig({ file: shardFile, env: {} }), { file: unreadable, field: 'shards[0].access_key_id_file' });
});

t.test('limits', async (t) => {
  const c = load({ ...base, backend_timeout_seconds: 2, backend_idle_timeout_seconds: 0.5, client_idle_timeout_seconds: 30, max_connections: 100, shutdown_grace_seconds: 5 });
  t.same(c.limits, { backendTimeoutMs: 2000, backendIdleTimeoutMs: 500, clientIdleTimeoutMs: 30_000, maxConnections: 100, shutdownGraceMs: 5000 });
  for (const bad of [0, -1, '5', null]) {
    const file = writeConfig({ ...base, backend_timeout_seconds: bad });
    expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'backend_timeout_seconds' }, /positive number/);
  }
});

t.test('shards inherit what they do not set', async (t) => {
  const c = load({
    endpoint: 'https://s3.example.com',
    region: 'eu-west-1',
    access_key_id: AKID,
    secret_access_key: SECRET,
    force_path_style: false,
    use_ssl: false,
    shards: [
      { bucket: 'shard-a' },
      { bucket: 'shard-b', endpoint: 'minio-2:9000', region: 'local', access_key_id: 'MINIO2', secret_access_key: OTHER_SECRET },
      { bucket: 'shard-c', endpoint: 'https://other.example.com/', access_key_id: 'ONLYKEY' },
      { bucket: 'shard-d', endpoint: 'http://minio-3:9000' },
    ],
  });
  t.same(c.virtualBuckets[0].shards, [
    { bucket: 'shard-a', endpoint: 'https://s3.example.com', region: 'eu-west-1', credentials: { accessKeyId: AKID, secretAccessKey: SECRET }, pathStyle: false, weight: 1 },
    { bucket: 'shard-b', endpoint: 'http://minio-2:9000', region: 'local', credentials: { accessKeyId: 'MINIO2', secretAccessKey: OTHER_SECRET }, pathStyle: false, weight: 1 },
    { bucket: 'shard-c', endpoint: 'https://other.example.com', region: 'eu-west-1', credentials: { accessKeyId: 'ONLYKEY', secretAccessKey: SECRET }, pathStyle: false, weight: 1 },
    { bucket: 'shard-d', endpoint: 'http://minio-3:9000', region: 'eu-west-1', credentials: { accessKeyId: AKID, secretAccessKey: SECRET }, pathStyle: false, weight: 1 },
  ]);

  const env = load({ ...base, buckets: undefined, shards: [{ bucket: 'aaa' }, { bucket: 'bbb', endpoint: 'http://own:9000' }] },
    { S3_ENDPOINT: 'http://from-env:9000' });
  t.same(env.virtualBuckets[0].shards.map((s) => s.endpoint), ['http://from-env:9000', 'http://own:9000'],
    'S3_ENDPOINT replaces the inherited endpoint, not a shard\'s own');

  const noTop = load({ access_key_id: AKID, secret_access_key: SECRET, shards: [{ bucket: 'aaa', endpoint: 'http://a:1' }] });
  t.equal(noTop.virtualBuckets[0].shards[0].endpoint, 'http://a:1', 'no top-level endpoint is needed when every shard has one');
});

t.test('virtual_buckets', async (t) => {
  const c = load({
    endpoint: 'http://minio:9000',
    access_key_id: AKID,
    secret_access_key: SECRET,
    hash_prefix: 'default/',
    virtual_buckets: [
      { name: 'tempo', buckets: ['tempo-1', 'tempo-2'], hash_prefix: 'single-tenant/' },
      { name: 'loki', shards: [{ bucket: 'loki-1' }, { bucket: 'loki-2', endpoint: 'http://other:9000' }] },
    ],
  });
  t.same(c.virtualBuckets.map((vb) => [vb.name, vb.hashPrefix, vb.shards.map((s) => `${s.endpoint}/${s.bucket}`)]), [
    ['tempo', 'single-tenant/', ['http://minio:9000/tempo-1', 'http://minio:9000/tempo-2']],
    ['loki', 'default/', ['http://minio:9000/loki-1', 'http://other:9000/loki-2']],
  ]);
  t.equal(load({ ...base, hash_prefix: 'p/' }).virtualBuckets[0].hashPrefix, 'p/', 'short form hash_prefix');

  const vbs = (virtual_buckets: unknown, extra: object = {}) => writeConfig({ ...base, buckets: undefined, virtual_buckets, ...extra });
  const cases: [string, { field: string; re?: RegExp }][] = [
    [vbs([{ name: 'aaa', buckets: ['x-1'] }, { name: 'aaa', buckets: ['x-2'] }]), { field: 'virtual_buckets[1].name', re: /virtual_buckets\[0\]/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'] }, { name: 'bbb', buckets: ['x-1'] }]), { field: 'virtual_buckets[1].buckets[0]', re: /already used by virtual_buckets\[0\]\.buckets\[0\]/ }],
    [vbs([{ name: 'healthz', buckets: ['x-1'] }]), { field: 'virtual_buckets[0].name', re: /reserved/ }],
    [vbs([{ name: 'readyz', buckets: ['x-1'] }]), { field: 'virtual_buckets[0].name', re: /reserved/ }],
    [vbs([{ name: 'Not_Valid', buckets: ['x-1'] }]), { field: 'virtual_buckets[0].name', re: /not a valid S3 bucket name/ }],
    [vbs([{ buckets: ['x-1'] }]), { field: 'virtual_buckets[0].name', re: /required/ }],
    [vbs([{ name: 'aaa' }]), { field: 'virtual_buckets[0].buckets', re: /required/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'], shards: [{ bucket: 'x-2' }] }]), { field: 'virtual_buckets[0].buckets' }],
    [vbs([{ name: 'aaa', shards: [] }]), { field: 'virtual_buckets[0].shards', re: /empty/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'], tenant: 'x' }]), { field: 'virtual_buckets[0].tenant', re: /not a known field/ }],
    [vbs([]), { field: 'virtual_buckets', re: /empty/ }],
    [vbs(['aaa']), { field: 'virtual_buckets[0]', re: /object/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'] }], { buckets: ['x-2'] }), { field: 'buckets', re: /virtual_buckets/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'] }], { virtual_bucket: 'bbb' }), { field: 'virtual_bucket', re: /virtual_buckets/ }],
    [vbs([{ name: 'aaa', buckets: ['x-1'] }], { shards: [{ bucket: 'x-2' }] }), { field: 'shards', re: /virtual_buckets/ }],
  ];
  for (const [file, { field, re }] of cases) expectError(t, () => loadConfig({ file, env: {} }), { file, field }, re);

  const file = vbs([{ name: 'aaa', buckets: ['x-1'] }]);
  expectError(t, () => loadConfig({ file, env: { S3_BUCKETS: 'x-2' } }), { file: 'S3_BUCKETS', field: 'buckets' }, /virtual_buckets/);
  expectError(t, () => loadConfig({ file, env: { S3_VIRTUAL_BUCKET: 'bbb' } }), { file: 'S3_VIRTUAL_BUCKET', field: 'virtual_bucket' });
});

t.test('short-form virtual bucket names', async (t) => {
  for (const name of ['metrics', 'healthz', 'readyz']) {
    const file = writeConfig({ ...base, virtual_bucket: name });
    expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'virtual_bucket' }, /reserved/);
  }
  const file = writeConfig({ ...base, virtual_bucket: 'Proxy' });
  expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'virtual_bucket' });
  t.equal(load({ ...base, virtual_bucket: 'tempo-traces' }).virtualBuckets[0].name, 'tempo-traces');
});

t.test('clients and allow_anonymous', async (t) => {
  const c = load({ ...base, clients: [{ access_key_id: 'tempo', secret_access_key: CLIENT_SECRET }, { access_key_id: 'loki', secret_access_key: OTHER_SECRET }] });
  t.same(c.clients, [{ accessKeyId: 'tempo', secretAccessKey: CLIENT_SECRET }, { accessKeyId: 'loki', secretAccessKey: OTHER_SECRET }]);
  t.equal(c.allowAnonymous, false, 'defaults to false with clients');
  t.equal(load({ ...base, clients: [{ access_key_id: 'a', secret_access_key: 'b' }], allow_anonymous: true }).allowAnonymous, true);
  t.equal(load({ ...base, clients: [] }).allowAnonymous, true, 'defaults to true without clients');

  const cases: [unknown, string, RegExp?][] = [
    [{ clients: [{ access_key_id: 'tempo' }] }, 'clients[0].secret_access_key', /required/],
    [{ clients: [{ secret_access_key: CLIENT_SECRET }] }, 'clients[0].access_key_id', /required/],
    [{ clients: [{ access_key_id: 'x', secret_access_key: CLIENT_SECRET, secret_access_key_file: '/x' }] }, 'clients[0].secret_access_key_file'],
    [{ clients: [{ access_key_id: 'x', secret_access_key: CLIENT_SECRET }, { access_key_id: 'x', secret_access_key: OTHER_SECRET }] },
      'clients[1].access_key_id', /clients\[0\]/],
    [{ clients: [{ access_key_id: 'x', secret_access_key: CLIENT_SECRET, role: 'admin' }] }, 'clients[0].role', /not a known field/],
    [{ clients: [{ access_key_id: 'x', secret_access_key: 42 }] }, 'clients[0].secret_access_key', /must be a string/],
    [{ clients: { access_key_id: 'x' } }, 'clients', /array/],
    [{ allow_anonymous: false }, 'allow_anonymous', /no clients/],
    [{ allow_anonymous: 'no' }, 'allow_anonymous'],
  ];
  for (const [extra, field, re] of cases) {
    const file = writeConfig({ ...base, ...(extra as object) });
    expectError(t, () => loadConfig({ file, env: {} }), { file, field }, re);
  }
});

t.test('listen_addr forms', async (t) => {
  t.same(parseListenAddr(':8080'), { host: '', port: 8080 });
  t.same(parseListenAddr('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  t.same(parseListenAddr('[::1]:8080'), { host: '::1', port: 8080 });
  t.same(parseListenAddr('[::]:9000'), { host: '::', port: 9000 });
  t.same(parseListenAddr('localhost:0'), { host: 'localhost', port: 0 });
  t.same(parseListenAddr('0.0.0.0:65535'), { host: '0.0.0.0', port: 65535 });
  for (const bad of ['8080', ':', ':65536', '::1:8080', '[127.0.0.1]:80', '[]:80', 'host:port', 'bad_host:80', ':80 ', ' :80', 'a:b:80', ':-1']) {
    t.throws(() => parseListenAddr(bad), { message: /^".*" (is not|:)/ }, bad);
  }
  t.same(load({ ...base, listen_addr: '[::1]:3200' }).listen, { host: '::1', port: 3200 });
  const file = writeConfig({ ...base, listen_addr: '8080' });
  expectError(t, () => loadConfig({ file, env: {} }), { file, field: 'listen_addr' }, /"8080"/);
});

t.test('other fields', async (t) => {
  const c = load({ ...base, log_level: 'debug', create_buckets: false, virtual_host_domains: ['S3.Local.', 'proxy.example.com'] });
  t.equal(c.logLevel, 'debug');
  t.equal(c.createBuckets, false);
  t.same(c.virtualHostDomains, ['s3.local', 'proxy.example.com']);
  for (const level of ['info', 'warn', 'error'] as const) t.equal(load({ ...base, log_level: level }).logLevel, level);
});

t.test('errors name the file and the field', async (t) => {
  const cases: [unknown, string, RegExp?][] = [
    [{ ...base, buckets: ['tempo-shard1', 'Shard_2'] }, 'buckets[1]', /: buckets\[1\]: "Shard_2" is not a valid S3 bucket name$/],
    [{ ...base, buckets: ['ab'] }, 'buckets[0]'],
    [{ ...base, buckets: ['a'.repeat(64)] }, 'buckets[0]'],
    [{ ...base, buckets: ['-abc'] }, 'buckets[0]'],
    [{ ...base, buckets: ['abc-'] }, 'buckets[0]'],
    [{ ...base, buckets: ['a..b'] }, 'buckets[0]'],
    [{ ...base, buckets: ['192.168.1.1'] }, 'buckets[0]'],
    [{ ...base, buckets: ['abc', 'abc'] }, 'buckets[1]', /already used by buckets\[0\]/],
    [{ ...base, buckets: [] }, 'buckets', /empty/],
    [{ ...base, buckets: 'abc' }, 'buckets', /array/],
    [{ ...base, buckets: ['abc', 7] }, 'buckets[1]', /string/],
    [{ ...base, buckets: undefined }, 'buckets', /required/],
    [{ ...base, shards: [{ bucket: 'xyz' }] }, 'buckets', /shards/],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz' }, { bucket: 'xyz', endpoint: 'http://127.0.0.1:9000/' }] },
      'shards[1].bucket', /already used by shards\[0\]\.bucket/],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz' }, { bucket: 'xyz', endpoint: 'http://other-host:9000' }] },
      'shards[1]', /already shard 0/],
    [{ ...base, buckets: undefined, shards: [{}] }, 'shards[0].bucket', /required/],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz', endpoint: 'http://h/p' }] }, 'shards[0].endpoint'],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz', region: 7 }] }, 'shards[0].region'],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz', endpiont: 'http://h' }] }, 'shards[0].endpiont', /not a known field/],
    [{ ...base, buckets: undefined, shards: ['xyz'] }, 'shards[0]', /object/],
    [{ ...base, endpoint: undefined }, 'endpoint', /required/],
    [{ ...base, endpoint: 9000 }, 'endpoint', /string/],
    [{ ...base, access_key_id: undefined }, 'access_key_id', /required/],
    [{ ...base, secret_access_key: undefined }, 'secret_access_key', /required/],
    [{ ...base, secret_access_key: '' }, 'secret_access_key', /empty/],
    [{ ...base, secret_access_key: 12345 }, 'secret_access_key', /must be a string$/],
    [{ ...base, secret_access_key: [SECRET] }, 'secret_access_key', /must be a string$/],
    [{ ...base, use_ssl: 'true' }, 'use_ssl', /true or false/],
    [{ ...base, create_buckets: 1 }, 'create_buckets'],
    [{ ...base, force_path_style: 'no' }, 'force_path_style'],
    [{ ...base, region: '' }, 'region'],
    [{ ...base, log_level: 'verbose' }, 'log_level', /"verbose" is not one of debug, info, warn, error/],
    [{ ...base, listen_addr: 'localhost' }, 'listen_addr'],
    [{ ...base, listen_addr: 8080 }, 'listen_addr'],
    [{ ...base, hash_prefix: 3 }, 'hash_prefix'],
    [{ ...base, virtual_host_domains: ['https://s3.local'] }, 'virtual_host_domains[0]'],
    [{ ...base, virtual_host_domains: 's3.local' }, 'virtual_host_domains'],
    [{ ...base, acces_key_id: 'typo' }, 'acces_key_id', /not a known field/],
    [{ ...base, insecure_skip_verify: true }, 'insecure_skip_verify', /not a known field/],
  ];
  for (const [obj, field, re] of cases) {
    const file = writeConfig(obj);
    expectError(t, () => loadConfig({ file, env: {} }), { file, field }, re);
  }
});

t.test('a key with a line break still gives a one-line message', async (t) => {
  const file = writeConfig({ ...base, 'we\nird': 1 });
  const err = t.throws(() => loadConfig({ file, env: {} })) as ConfigError;
  t.equal(err.field, 'we\nird');
  t.equal(err.message, `${file}: we ird: is not a known field`);
});

t.test('whole-file errors', async (t) => {
  const missing = join(dir, 'missing.json');
  expectError(t, () => loadConfig({ file: missing, env: {} }), { file: missing, field: '' }, /ENOENT/);
  expectError(t, () => loadConfig({ file: dir, env: {} }), { file: dir, field: '' }, /EISDIR/);
  const array = write('[]');
  expectError(t, () => loadConfig({ file: array, env: {} }), { file: array, field: '' }, /object/);

  // V8's own messages quote the text around the error; the secret sits right there.
  const broken = [
    `{\n  "access_key_id": "${AKID}",\n  "secret_access_key": "${SECRET}" }}`,
    `{\n  "secret_access_key": "${SECRET}",\n}`,
    `{"secret_access_key": "${SECRET}`,
    `{"secret_access_key": ${SECRET}}`,
    `{"secret_access_key": "${SECRET}" "x": 1}`,
  ];
  for (const text of broken) {
    const file = write(text);
    expectError(t, () => loadConfig({ file, env: {} }), { file, field: '' }, /invalid JSON/);
  }
  const located = write(`{\n  "secret_access_key": "${SECRET}",\n}`);
  expectError(t, () => loadConfig({ file: located, env: {} }), { file: located, field: '' }, /line 3 column 1/);
});

t.test('previous_rings: earlier bucket lists, newest first', async (t) => {
  const c = load({ ...base, previous_rings: [['b-one', 'b-two'], ['b-one', 'b-old']] });
  const [vb] = c.virtualBuckets;
  t.same(vb.shards.map((s) => s.bucket), ['b-one', 'b-two', 'b-three'], 'the current ring is buckets');
  t.same(vb.previousRings.map((r) => [r.placement, r.shards.map((s) => s.bucket)]), [
    ['ring', ['b-one', 'b-two']],
    ['ring', ['b-one', 'b-old']],
  ]);
  t.equal(vb.previousRings[0].shards[0], vb.shards[0], 'a current bucket named again is the same shard');
  t.same(vb.previousRings[1].shards[1], {
    bucket: 'b-old', endpoint: 'http://127.0.0.1:9000', region: 'us-east-1',
    credentials: { accessKeyId: AKID, secretAccessKey: SECRET }, pathStyle: true, weight: 1,
  }, 'a bucket only an earlier ring has inherits the top-level settings');

  const withObjects = load({
    ...base, buckets: undefined, placement: 'balanced',
    shards: [{ bucket: 'new-1', weight: 2 }, { bucket: 'new-2' }],
    previous_rings: [
      { placement: 'ring', shards: [{ bucket: 'new-1' }, { bucket: 'gone-1', endpoint: 'http://elsewhere:9000', region: 'eu-west-1' }] },
      [{ bucket: 'new-1', weight: 5 }, 'gone-1'],
    ],
  });
  const vb2 = withObjects.virtualBuckets[0];
  t.equal(vb2.placement, 'balanced');
  t.same(vb2.shards.map((s) => [s.bucket, s.weight]), [['new-1', 2], ['new-2', 1]]);
  t.same(vb2.previousRings.map((r) => r.placement), ['ring', 'balanced'], 'a bare list takes the virtual bucket\'s placement');
  t.same(vb2.previousRings[0].shards.map((s) => [s.bucket, s.endpoint, s.region]),
    [['new-1', 'http://127.0.0.1:9000', 'us-east-1'], ['gone-1', 'http://elsewhere:9000', 'eu-west-1']]);
  t.same(vb2.previousRings[1].shards.map((s) => [s.bucket, s.endpoint, s.weight]),
    [['new-1', 'http://127.0.0.1:9000', 5], ['gone-1', 'http://elsewhere:9000', 1]],
    'an earlier ring may weigh a known shard differently and names one defined before by its bucket alone');

  const multi = load({
    ...base, buckets: undefined, placement: 'balanced',
    virtual_buckets: [
      { name: 'tempo', buckets: ['t-1', 't-2'], previous_rings: [['t-1']] },
      { name: 'loki', buckets: ['l-1'], placement: 'ring' },
    ],
  });
  t.same(multi.virtualBuckets.map((v) => [v.name, v.placement, v.previousRings.map((r) => r.shards.map((s) => s.bucket))]), [
    ['tempo', 'balanced', [['t-1']]],
    ['loki', 'ring', []],
  ], 'placement at the top is every virtual bucket\'s default');
});

t.test('previous_rings and placement errors', async (t) => {
  const cases: [unknown, string, RegExp?][] = [
    [{ ...base, placement: 'fair' }, 'placement', /not one of ring, balanced/],
    [{ ...base, previous_rings: ['b-one'] }, 'previous_rings[0]', /object/],
    [{ ...base, previous_rings: {} }, 'previous_rings', /array/],
    [{ ...base, previous_rings: [[]] }, 'previous_rings[0]', /empty/],
    [{ ...base, previous_rings: [['b-one', 'b-one']] }, 'previous_rings[0][1]', /already shard 0/],
    [{ ...base, previous_rings: [['Bad_Name']] }, 'previous_rings[0][0]', /not a valid S3 bucket name/],
    [{ ...base, previous_rings: [[{ bucket: 'b-one', endpoint: 'http://x:1' }]] }, 'previous_rings[0][0].endpoint', /already defined/],
    [{ ...base, previous_rings: [[{ bucket: 'b-one', weight: 2 }]] }, 'previous_rings[0][0].weight', /balanced/],
    [{ ...base, previous_rings: [{ placement: 'ring', buckets: ['b-one'], shards: [] }] }, 'previous_rings[0].buckets', /combined/],
    [{ ...base, previous_rings: [{ placement: 'ring' }] }, 'previous_rings[0].buckets', /required/],
    [{ ...base, previous_rings: [{ buckets: ['b-one'], hash_prefix: 'x/' }] }, 'previous_rings[0].hash_prefix', /not a known field/],
    [{ ...base, previous_rings: [{ placement: 'other', buckets: ['b-one'] }] }, 'previous_rings[0].placement', /not one of/],
    [{ ...base, buckets: undefined, shards: [{ bucket: 'xyz', weight: 2 }] }, 'shards[0].weight', /balanced/],
    [{ ...base, buckets: undefined, placement: 'balanced', shards: [{ bucket: 'xyz', weight: 0 }] }, 'shards[0].weight', /positive/],
    [{ ...base, buckets: undefined, placement: 'balanced', shards: [{ bucket: 'xyz', weight: '2' }] }, 'shards[0].weight', /positive/],
    [{ ...base, buckets: undefined, virtual_buckets: [{ name: 'vbb', buckets: ['x-1'] }], previous_rings: [['x-1']] },
      'previous_rings', /virtual_buckets/],
    [{ ...base, buckets: undefined, virtual_buckets: [{ name: 'vbb', buckets: ['x-1'], previous_rings: [['x-2', 'x-2']] }] },
      'virtual_buckets[0].previous_rings[0][1]', /already/],
  ];
  for (const [obj, field, re] of cases) {
    const file = writeConfig(obj);
    expectError(t, () => loadConfig({ file, env: {} }), { file, field }, re);
  }
});
