import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:https';
import { S3Client, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startStack, CREDENTIALS } from '../helpers/stack';
import { run } from '../helpers/run';
import { python } from '../helpers/python';

// The optional TLS listener: a client that trusts the configured
// certificate talks S3 over HTTPS; one that does not is refused.

const BOTO3_MULTIPART = `
import io, json, os, sys
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, ca = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=ca, config=Config(s3={"addressing_style": "path"}))
data = os.urandom(12 * 1024 * 1024)
s3.upload_fileobj(io.BytesIO(data), "proxy-bucket", "tls/b/multipart", Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
got = s3.get_object(Bucket="proxy-bucket", Key="tls/b/multipart")["Body"].read()
head = s3.head_object(Bucket="proxy-bucket", Key="tls/b/multipart", ChecksumMode="ENABLED")
print(json.dumps({"same": got == data, "checksum": head.get("ChecksumCRC32")}))
`;

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
  // Over HTTPS boto3 sends streamed bodies aws-chunked with a CRC32 trailer,
  // and a multipart upload begun with that algorithm wants it on every part.
  const boto = await run(python(), ['-c', BOTO3_MULTIPART, endpoint, cert], { env: { ...process.env, AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey } });
  t.equal(boto.status, 0, `boto3 multipart upload over HTTPS: ${boto.stdout.trim()} ${boto.stderr.slice(-800)}`);
  t.match(boto.stdout, /"same": true/, 'read back whole');
  t.match(boto.stdout, /"checksum": "[A-Za-z0-9+\/=]+-\d+"/, 'the object keeps its parts\' CRC32');
  await t.rejects(fetch(`${endpoint}/healthz`), 'a client that does not trust the certificate is refused');
  await t.rejects(fetch(`${stack.endpoint}/healthz`), 'plain HTTP is not served on the TLS port');
});
