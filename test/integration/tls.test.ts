import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:https';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { run } from '../helpers/run';

// The optional TLS listener: a client that trusts the configured
// certificate talks S3 over HTTPS; one that does not is refused.

t.test('HTTPS listener from tls_cert_file and tls_key_file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tss-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  t.equal(made.status, 0, made.status ? made.stderr.slice(-500) : 'a self-signed certificate for 127.0.0.1');
  const stack = await startStack(t, { extra: { tls_cert_file: cert, tls_key_file: key } });
  const endpoint = stack.endpoint.replace('http:', 'https:');
  const s3 = new S3Client({
    endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS,
    requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca: readFileSync(cert) }) }),
  });
  t.teardown(() => s3.destroy());
  await s3.send(new PutObjectCommand({ Bucket: 'proxy-bucket', Key: 'tls/b/x', Body: 'over tls' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'proxy-bucket', Key: 'tls/b/x' }));
  t.equal(await got.Body!.transformToString(), 'over tls');
  await t.rejects(fetch(`${endpoint}/healthz`), 'a client that does not trust the certificate is refused');
  await t.rejects(fetch(`${stack.endpoint}/healthz`), 'plain HTTP is not served on the TLS port');
});
