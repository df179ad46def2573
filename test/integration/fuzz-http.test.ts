import t from 'tap';
import sax from 'sax';
import { connect } from 'node:net';
import { createHash } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { request } from 'undici';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { startStack } from '../helpers/stack';
import type { Stack } from '../helpers/stack';
import {
  Rng, STREAMING_HASH, Tally, caseSeed, crc32Base64, encodeAwsChunked, fuzzIterations, fuzzSeed, hmacSha256,
  mutateBytes, sha256Hex, signingKey, type ChunkedKind,
} from '../helpers/fuzz';
import { S3Error, isS3Error, type S3ErrorCode } from '../../lib/errors';
import { encodeListToken } from '../../lib/list-merge';
import { Ring } from '../../lib/ring';
import type { ShardProxy } from '../../lib/server';

// Random and mutated HTTP requests written on raw sockets to the proxy in
// front of a real MinIO, built from a corpus of valid S3 requests. Whatever
// arrives, the proxy answers with well-formed HTTP in bounded time, its
// errors are S3 XML with the catalogue's status, nothing it throws is
// unexpected, and it keeps serving. A second proxy with clients configured
// gets signed requests, so that the signature checks and the aws-chunked
// chunk signatures are fuzzed too. FUZZ_SEED replays the same requests, up
// to the ports and the signing time; failures print their bytes.

const SEED = fuzzSeed();
const ITERATIONS = fuzzIterations(2500);
const CONCURRENCY = 6;
const ANSWER_WITHIN_MS = 10_000;
// A request whose body may still be owed gets the client's FIN after this.
const FIN_AFTER_MS = 1500;
const BUCKET = 'proxy-bucket';
const CLIENT = { accessKeyId: 'fuzz-client', secretAccessKey: 'fuzz-client-secret' };
const REGION = 'us-east-1';
const KEYS = ['fuzz/a', 'fuzz/b c', 'fuzz/ü', 'fuzz/dir/x', 'fuzz/+plus', 'fuzz/%41', 'fuzz/dir/'];
const SENTINEL_KEY = 'sentinel/untouched';
const SENTINEL_BODY = Buffer.from('the one object no fuzz request names\n');

// ---------------------------------------------------------------------------
// Requests

interface Draft {
  method: string;
  /** The path, already percent-encoded. */
  path: string;
  /** Decoded query parameters; encoded on the way out. */
  query: [string, string][];
  headers: [string, string][];
  body: Buffer;
  /** aws-chunked bodies are encoded once the signature they chain from is known. */
  stream?: { kind: ChunkedKind; payload: Buffer; chunkSize: number; trailer?: string; httpChunked: boolean };
  /** The body goes out with Transfer-Encoding: chunked. */
  httpChunked?: boolean;
}

interface Context {
  uploadId: string;
  partEtag: string;
  port: number;
}

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

/** SigV4 URI encoding: every byte but the unreserved ones (and `/` in paths) as %XX. */
function awsEncode(s: string | Buffer, keepSlash: boolean): string {
  let out = '';
  for (const b of Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += (b < 0x80 && UNRESERVED.test(c)) || (keepSlash && c === '/') ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const objectPath = (key: string): string => `/${BUCKET}/${awsEncode(key, true)}`;
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('base64');
const xmlText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function deleteXml(rng: Rng): Buffer {
  const objects = Array.from({ length: 1 + rng.int(4) }, () => `<Object><Key>${xmlText(rng.pick(KEYS))}</Key></Object>`);
  return Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
    `<Quiet>${rng.bool()}</Quiet>${objects.join('')}</Delete>`);
}

function completeXml(ctx: Context): Buffer {
  return Buffer.from(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${xmlText(ctx.partEtag)}</ETag></Part></CompleteMultipartUpload>`);
}

function taggingXml(rng: Rng): Buffer {
  return Buffer.from(`<Tagging><TagSet><Tag><Key>k${rng.int(9)}</Key><Value>v &amp; w</Value></Tag></TagSet></Tagging>`);
}

/** A valid S3 request, one of every kind the proxy serves. */
function corpus(rng: Rng, ctx: Context): Draft {
  const key = rng.pick(KEYS);
  const d: Draft = { method: 'GET', path: objectPath(key), query: [], headers: [], body: Buffer.alloc(0) };
  const payload = (): Buffer => rng.bytes(rng.pick([0, 1, 10, 100, 5000, 70000]));
  switch (rng.int(26)) {
    case 0: case 1:
      if (rng.bool()) d.headers.push(['Range', rng.pick(['bytes=0-3', 'bytes=2-', 'bytes=-2', 'bytes=0-0'])]);
      if (rng.bool(0.2)) d.query.push(['response-content-type', 'text/plain']);
      break;
    case 2:
      d.method = 'HEAD';
      break;
    case 3: case 4: {
      d.method = 'PUT';
      d.body = payload();
      if (rng.bool(0.3)) d.headers.push(['Content-MD5', md5(d.body)]);
      if (rng.bool(0.3)) d.headers.push(['x-amz-checksum-crc32', crc32Base64(d.body)]);
      if (rng.bool(0.3)) d.headers.push(['Content-Type', 'application/octet-stream']);
      if (rng.bool(0.2)) d.headers.push(['x-amz-meta-fuzz', 'yes']);
      break;
    }
    case 5: case 6: case 7: {
      d.method = 'PUT';
      const kind = rng.pick<ChunkedKind>(['signed', 'signed-trailer', 'unsigned-trailer']);
      const p = payload();
      d.stream = {
        kind, payload: p, chunkSize: rng.pick([8192, 65536, 1 + rng.int(9000)]),
        trailer: kind === 'signed' ? undefined : 'x-amz-checksum-crc32', httpChunked: rng.bool(0.25),
      };
      break;
    }
    case 8:
      d.method = 'PUT';
      d.body = payload();
      d.httpChunked = true;
      break;
    case 9:
      d.method = 'DELETE';
      break;
    case 10:
      d.method = 'POST';
      d.path = `/${BUCKET}`;
      d.query.push(['delete', '']);
      d.body = deleteXml(rng);
      d.headers.push(['Content-MD5', md5(d.body)]);
      break;
    case 11:
      d.method = 'POST';
      d.query.push(['uploads', '']);
      break;
    case 12:
      d.method = 'PUT';
      d.query.push(['partNumber', String(rng.pick([1, 2, 3]))], ['uploadId', ctx.uploadId]);
      d.body = payload();
      break;
    case 13:
      d.query.push(['uploadId', ctx.uploadId]);
      break;
    case 14:
      d.method = 'POST';
      d.query.push(['uploadId', rng.bool(0.5) ? ctx.uploadId : 'bogus-upload-id']);
      d.body = completeXml(ctx);
      break;
    case 15:
      d.method = 'DELETE';
      d.query.push(['uploadId', rng.bool(0.1) ? ctx.uploadId : 'bogus-upload-id']);
      break;
    case 16:
      d.method = rng.pick(['GET', 'PUT', 'DELETE']);
      d.query.push(['tagging', '']);
      if (d.method === 'PUT') d.body = taggingXml(rng);
      break;
    case 17: case 18: {
      d.path = `/${BUCKET}`;
      d.query.push(['list-type', '2']);
      if (rng.bool()) d.query.push(['prefix', rng.pick(['fuzz/', 'fuzz/d', '', 'sentinel'])]);
      if (rng.bool()) d.query.push(['delimiter', '/']);
      if (rng.bool()) d.query.push(['max-keys', String(rng.pick([0, 1, 2, 1000]))]);
      if (rng.bool(0.4)) d.query.push(['continuation-token', encodeListToken(rng.pick(KEYS))]);
      if (rng.bool(0.2)) d.query.push(['start-after', rng.pick(KEYS)]);
      if (rng.bool(0.5)) d.query.push(['encoding-type', 'url']);
      if (rng.bool(0.2)) d.query.push(['fetch-owner', 'true']);
      break;
    }
    case 19:
      d.path = `/${BUCKET}`;
      if (rng.bool()) d.query.push(['marker', rng.pick(KEYS)]);
      if (rng.bool()) d.query.push(['max-keys', '2']);
      break;
    case 20:
      d.path = `/${BUCKET}`;
      d.query.push([rng.pick(['versions', 'uploads']), '']);
      if (rng.bool()) d.query.push(['key-marker', rng.pick(KEYS)]);
      if (rng.bool()) d.query.push(['prefix', 'fuzz/']);
      break;
    case 21: {
      d.path = `/${BUCKET}`;
      const [method, sub] = rng.pick([['GET', 'location'], ['GET', 'versioning'], ['HEAD', ''], ['PUT', ''], ['DELETE', '']]);
      d.method = method;
      if (sub) d.query.push([sub, '']);
      break;
    }
    case 22:
      d.path = '/';
      break;
    case 23:
      d.method = 'PUT';
      d.headers.push(['x-amz-copy-source', `/${BUCKET}/${awsEncode(rng.pick(KEYS), true)}`]);
      if (rng.bool(0.3)) d.headers.push(['x-amz-metadata-directive', rng.pick(['COPY', 'REPLACE'])]);
      break;
    case 24:
      d.method = 'PUT';
      d.query.push(['partNumber', '2'], ['uploadId', ctx.uploadId]);
      d.headers.push(['x-amz-copy-source', `/${BUCKET}/${awsEncode(rng.pick(KEYS), true)}`]);
      if (rng.bool()) d.headers.push(['x-amz-copy-source-range', 'bytes=0-1']);
      break;
    default:
      d.query.push([rng.pick(['attributes', 'acl']), '']);
      if (d.query[0][0] === 'attributes') d.headers.push(['x-amz-object-attributes', 'ETag,ObjectSize']);
  }
  return d;
}

// ---------------------------------------------------------------------------
// Mutations of a draft

const ODD_METHODS = ['PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO', 'get', 'GeT', 'M-SEARCH', 'PURGE', 'MKCOL', 'LOCK', 'COPY'];
const BAD_PATHS = ['%', '%zz', '%C3%28', '%00', '%FF%FE', '%2F', '%2e%2e', '..', '//', '/../..', '\u00e9', '%E2%82', '+', ' '];
const UNKNOWN_SUBRESOURCES = ['cors', 'policy', 'website', 'lifecycle', 'select', 'torrent', 'restore', 'retention',
  'legal-hold', 'notification', 'replication', 'encryption', 'object-lock', 'logging', 'requestPayment', 'foo', 'ACL'];
const BAD_VALUES: Record<string, string[]> = {
  partNumber: ['abc', '0', '-1', '10001', '99999999999999999999', '', '1.5'],
  uploadId: ['', 'garbage', 'x'.repeat(5000), '%', '../..'],
  'max-keys': ['-1', 'abc', '99999999999', '', '1e3'],
  'max-uploads': ['-1', 'abc'],
  'continuation-token': ['garbage', 'AAAA', '', '%', 'A'.repeat(3000)],
  'encoding-type': ['base64', 'URL', ''],
  'list-type': ['3', '', 'two'],
  versionId: ['garbage', '', 'null'],
  'key-marker': ['\u0000', 'x'.repeat(2000)],
  'version-id-marker': ['v1'],
  prefix: ['\u0001', '%', 'x'.repeat(2000)],
  delimiter: ['', '\u0000', 'xx'],
};
const RANGES = ['bytes=5-2', 'bytes=abc', 'bytes=-', 'bytes=0-0,5-10', 'bytes=99999999999-', 'bytes=-0', 'chars=0-1',
  'bytes=1-2-3', 'bytes= 0-1', '', 'bytes=0-99999999999999999999999', 'bytes=-99999999999', 'bytes'];
const HEADER_VALUES: [string, string[]][] = [
  ['Range', RANGES],
  ['Content-Length', ['-1', 'abc', '1e3', '99999999999999999999', '', ' 5', '0x10', '5, 5', '5,6']],
  ['Transfer-Encoding', ['chunked', 'gzip', 'chunked, gzip', 'identity', 'gzip, chunked', 'xchunked']],
  ['x-amz-decoded-content-length', ['-1', 'abc', '0', '1', '99999999999', '']],
  ['x-amz-content-sha256', ['garbage', 'UNSIGNED-PAYLOAD', '0'.repeat(64), 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'STREAMING-AWS4-HMAC-SHA256-EVENTS', '']],
  ['Content-MD5', ['garbage', '', '1B2M2Y8AsgTpgAmY7PhCfg==', 'AAAA']],
  ['x-amz-copy-source', ['', '/', 'nobucket', `/${BUCKET}/`, `/${BUCKET}/%`, '/other/k', `/${BUCKET}/fuzz/a?versionId=`,
    `${BUCKET}/${'k'.repeat(1200)}`, '/shard1/fuzz/a', `/${BUCKET}/%C3%28`]],
  ['x-amz-copy-source-range', ['bytes=5-2', 'bytes=abc', '']],
  ['x-amz-trailer', ['x-amz-checksum-md5', 'x-amz-checksum-crc32,x-amz-checksum-sha256', '', 'x-amz-meta-a']],
  ['Expect', ['100-continue', 'foo']],
  ['Content-Encoding', ['aws-chunked', 'aws-chunked,gzip', 'garbage', '']],
  ['Host', ['', 'proxy-bucket.localhost', 'a:b:c', 'x'.repeat(300)]],
  ['x-amz-checksum-crc32', ['AAAAAA==', 'garbage', '']],
  ['x-amz-checksum-sha256', ['garbage']],
  ['If-Match', ['"nope"', '*']],
  ['If-Modified-Since', ['garbage', 'Wed, 21 Oct 2099 07:28:00 GMT']],
  ['x-amz-date', ['garbage', '20240102T030405Z']],
  ['Authorization', ['garbage', 'AWS4-HMAC-SHA256 ', 'AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00',
    'AWS AKID:sig', 'AWS4-HMAC-SHA256 Credential=fuzz-client/20240102/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-date,Signature=' + '0'.repeat(64)]],
  ['x-amz-object-attributes', ['garbage', '']],
  ['x-amz-metadata-directive', ['garbage']],
  ['Connection', ['close', 'upgrade', 'keep-alive, Upgrade']],
  ['Upgrade', ['websocket', 'h2c']],
];

function mutateDraft(rng: Rng, d: Draft): void {
  for (let n = 1 + rng.int(2); n > 0; n--) {
    switch (rng.int(12)) {
      case 0:
        d.method = rng.pick(ODD_METHODS);
        break;
      case 1: {
        const p = rng.int(d.path.length + 1);
        d.path = d.path.slice(0, p) + rng.pick(BAD_PATHS) + d.path.slice(p);
        break;
      }
      case 2:
        d.path = rng.pick([`/${BUCKET}/${'k'.repeat(rng.pick([1024, 1025, 3000]))}`, `/${BUCKET}/`, '/', '/shard1/fuzz/a',
          '/nobucket/x', `/${BUCKET}//x`, `/${BUCKET}/fuzz/a/`, '*', `//${BUCKET}/x`, `/${BUCKET}/${'%41'.repeat(400)}`]);
        break;
      case 3:
        d.query.push([rng.pick(UNKNOWN_SUBRESOURCES), rng.bool() ? '' : 'x']);
        break;
      case 4: {
        const name = rng.pick(Object.keys(BAD_VALUES));
        const value = rng.pick(BAD_VALUES[name]);
        const i = d.query.findIndex(([k]) => k === name);
        if (i >= 0 && rng.bool()) d.query[i][1] = value;
        else d.query.push([name, value]);
        break;
      }
      case 5: case 6: {
        const [name, values] = rng.pick(HEADER_VALUES);
        const value = rng.pick(values);
        const i = d.headers.findIndex(([h]) => h.toLowerCase() === name.toLowerCase());
        if (i >= 0 && rng.bool()) d.headers[i][1] = value;
        else d.headers.push([name, value]);
        break;
      }
      case 7:
        if (d.headers.length > 0) d.headers.push([...rng.pick(d.headers)] as [string, string]);
        break;
      case 8:
        if (d.headers.length > 0) d.headers.splice(rng.int(d.headers.length), 1);
        break;
      case 9: {
        // Huge values; past 16 KiB of headers Node itself answers 431.
        const size = rng.pick([1000, 8000, 20000]);
        if (rng.bool() && d.headers.length > 0) rng.pick(d.headers)[1] += 'v'.repeat(size);
        else d.headers.push([rng.pick(['x-amz-meta-big', 'Range', 'x-amz-copy-source', 'Cookie']), 'v'.repeat(size)]);
        break;
      }
      case 10:
        d.query.push(...d.query.slice(0, 1 + rng.int(2)).map(([k, v]) => [k, v + (rng.bool() ? '' : 'x')] as [string, string]));
        break;
      default:
        if (d.headers.length > 0) {
          // A header name or value with bytes HTTP forbids.
          const h = rng.pick(d.headers);
          if (rng.bool()) h[0] = h[0] + rng.pick([' ', '\u0000', '(', 'é', ':x']);
          else h[1] = h[1] + rng.pick(['\u0000', '\u0007', '\u00ff', '\r', '\n x']);
        }
    }
  }
}

function breakXml(rng: Rng, b: Buffer): Buffer {
  const s = b.toString('utf8');
  switch (rng.int(5)) {
    case 0: return mutateBytes(rng, b, 3, 1000);
    case 1: return b.subarray(0, rng.int(b.length));
    case 2: return Buffer.from(s.replace(/<Key>[^<]*<\/Key>/, rng.pick(['', '<Key></Key>', '<Key/>', '<Key><![CDATA[x]]></Key>'])));
    case 3: return Buffer.from(s.replace(/^<\?xml[^>]*>/, '<!DOCTYPE d [<!ENTITY e "e">]>').replace('<Key>', '<Key>&e;'));
    default: return Buffer.from(s.replace(/<\/\w+>$/, rng.pick(['', '</Nope>', '<Object><Key>x</Key></Object>'])));
  }
}

// ---------------------------------------------------------------------------
// Signing (SigV4, written from the AWS documentation)

function sign(d: Draft, host: string, payloadHash: string, now: Date): string {
  const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
  const date = amzDate.slice(0, 8);
  d.headers.push(['x-amz-date', amzDate], ['x-amz-content-sha256', payloadHash]);
  const signed = new Map<string, string[]>([['host', [host]]]);
  for (const [name, value] of d.headers) {
    const n = name.toLowerCase();
    if (n.startsWith('x-amz-') || ['content-md5', 'content-type', 'range', 'content-encoding'].includes(n)) {
      signed.set(n, [...(signed.get(n) ?? []), value]);
    }
  }
  const names = [...signed.keys()].sort();
  const canonicalQuery = d.query.map(([k, v]) => [awsEncode(k, false), awsEncode(v, false)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const canonical = [d.method, d.path, canonicalQuery,
    names.map((n) => `${n}:${signed.get(n)!.map((v) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`).join(''),
    names.join(';'), payloadHash].join('\n');
  const scope = `${date}/${REGION}/s3/aws4_request`;
  const key = signingKey(CLIENT.secretAccessKey, date, REGION);
  const signature = hmacSha256(key, ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonical)].join('\n')).toString('hex');
  d.headers.push(['Authorization', `AWS4-HMAC-SHA256 Credential=${CLIENT.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`]);
  return signature;
}

// ---------------------------------------------------------------------------
// One fuzz case: the bytes, and how the exchange should go

interface Case {
  bytes: Buffer;
  /** Bytes that complete a body the request declared but did not carry. */
  completion?: Buffer;
  /** The framing is certain: an answer is owed without the client's FIN. */
  confident: boolean;
  /** A valid GET of the sentinel pipelined after it on the same connection. */
  followUp: boolean;
  port: number;
  /** Sent to the proxy that authenticates clients, signed. */
  signed: boolean;
  /** A corpus request as a client sends it, nothing broken. */
  pristine: boolean;
  summary: string;
}

function httpChunk(body: Buffer, rng: Rng): Buffer {
  const out: Buffer[] = [];
  for (let pos = 0; pos < body.length;) {
    const n = Math.min(body.length - pos, 1 + rng.int(20000));
    out.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(pos, pos + n), Buffer.from('\r\n'));
    pos += n;
  }
  out.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(out);
}

function buildCase(seed: number, ctx: Context, authPort: number): Case {
  const rng = new Rng(seed);
  const auth = rng.bool(0.2);
  const port = auth ? authPort : ctx.port;
  const host = `127.0.0.1:${port}`;
  const d = corpus(rng, ctx);
  const notes: string[] = [];

  // The body, sometimes broken, its digests sometimes made to match again.
  if (!d.stream && d.body.length > 0 && rng.bool(0.3)) {
    d.body = breakXml(rng, d.body);
    notes.push('body broken');
    if (rng.bool(0.6)) {
      const m = d.headers.find(([h]) => h === 'Content-MD5');
      if (m) m[1] = md5(d.body);
      const c = d.headers.find(([h]) => h === 'x-amz-checksum-crc32');
      if (c) c[1] = crc32Base64(d.body);
    }
  }
  const streamed = d.stream;
  if (streamed) {
    d.headers.push(['Content-Encoding', 'aws-chunked'], ['x-amz-decoded-content-length', String(streamed.payload.length)]);
    if (streamed.trailer) d.headers.push(['x-amz-trailer', streamed.trailer]);
  }
  let signature: string | undefined;
  const now = new Date();
  if (auth) {
    const payloadHash = streamed ? STREAMING_HASH[streamed.kind]
      : rng.bool(0.5) ? sha256Hex(d.body) : 'UNSIGNED-PAYLOAD';
    signature = sign(d, host, payloadHash, now);
  } else if (streamed) {
    d.headers.push(['x-amz-content-sha256', STREAMING_HASH[streamed.kind]]);
  }
  if (streamed) {
    const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
    d.body = encodeAwsChunked(streamed.payload, {
      kind: streamed.kind, chunkSize: streamed.chunkSize,
      signing: signature ? {
        signingKey: signingKey(CLIENT.secretAccessKey, amzDate.slice(0, 8), REGION), amzDate,
        scope: `${amzDate.slice(0, 8)}/${REGION}/s3/aws4_request`, seedSignature: signature,
      } : undefined,
    });
    if (rng.bool(0.35)) {
      d.body = mutateBytes(rng, d.body);
      notes.push('aws-chunked framing broken');
    }
    d.httpChunked = streamed.httpChunked;
  }
  const declared = d.body.length;
  let body = d.body;
  if (rng.bool(0.06)) {
    // The body stops short of what the headers declare.
    body = body.subarray(0, rng.int(body.length + 1));
    notes.push('body cut short');
  }
  d.headers.unshift(['Host', host]);
  if (d.httpChunked) d.headers.push(['Transfer-Encoding', 'chunked']);
  else if (d.body.length > 0 || d.method === 'PUT' || d.method === 'POST' || rng.bool(0.1)) d.headers.push(['Content-Length', String(declared)]);

  const structural = rng.bool(auth ? 0.4 : 0.6);
  if (structural) {
    mutateDraft(rng, d);
    notes.push('request mutated');
  }
  const query = d.query.map(([k, v]) => (v === '' && rng.bool(0.7) ? awsEncode(k, false) : `${awsEncode(k, false)}=${awsEncode(v, false)}`)).join('&');
  const version = rng.bool(0.03) ? rng.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/1']) : 'HTTP/1.1';
  const head = `${d.method} ${d.path}${query ? `?${query}` : ''} ${version}\r\n` + d.headers.map(([h, v]) => `${h}: ${v}\r\n`).join('') + '\r\n';
  let bytes: Buffer = Buffer.concat([Buffer.from(head, 'latin1'), d.httpChunked ? httpChunk(body, rng) : body]);
  const byteLevel = rng.bool(0.15);
  if (byteLevel) {
    bytes = mutateBytes(rng, bytes, 3);
    notes.push('bytes mutated');
  }
  const frame = framing(bytes);
  return {
    bytes,
    completion: frame.completion,
    confident: frame.confident,
    followUp: !byteLevel && frame.confident && frame.exact && version === 'HTTP/1.1' && rng.bool(0.2),
    port,
    signed: auth,
    pristine: notes.length === 0 && version === 'HTTP/1.1',
    summary: `${auth ? 'signed ' : ''}${d.method} ${d.path.slice(0, 60)}${query ? '?' + query.slice(0, 60) : ''}` +
      `${notes.length ? ` (${notes.join(', ')})` : ''}`,
  };
}

interface Framing {
  /** Node will see a whole request (once `completion` is sent): an answer is owed. */
  confident: boolean;
  /** The bytes end exactly where the request ends. */
  exact: boolean;
  completion?: Buffer;
}

/** How Node's parser will frame these bytes, as far as it can be told. */
function framing(bytes: Buffer): Framing {
  // Empty lines before a request line are skipped (RFC 9112, 2.2), as Node
  // does: a run of nothing but CR and LF is no request yet.
  let start = 0;
  while (start < bytes.length && (bytes[start] === 0x0d || bytes[start] === 0x0a)) start += 1;
  bytes = bytes.subarray(start);
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return { confident: false, exact: false };
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n').slice(1);
  const values = (name: string) => lines.filter((l) => l.toLowerCase().startsWith(name + ':')).map((l) => l.slice(name.length + 1).trim());
  if (lines.some((l) => !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/.test(l))) {
    // Node refuses the header block.
    return { confident: true, exact: false };
  }
  const body = bytes.subarray(end + 4);
  const cl = values('content-length');
  const te = values('transfer-encoding');
  if (te.length > 0 || cl.length > 1) {
    if (cl.length > 0 || te.length !== 1 || te[0].toLowerCase() !== 'chunked') return { confident: true, exact: false };
    const state = chunkedState(body);
    if (state.done) return { confident: true, exact: state.rest === 0 };
    if (state.owed > 1 << 20) return { confident: false, exact: false };
    return { confident: false, exact: false, completion: Buffer.concat([Buffer.alloc(state.owed, 'x'), Buffer.from('\r\n0\r\n\r\n')]) };
  }
  if (cl.length === 0) return { confident: true, exact: body.length === 0 };
  if (!/^\d+$/.test(cl[0])) return { confident: true, exact: false };
  const owed = Number(cl[0]) - body.length;
  if (owed <= 0) return { confident: true, exact: owed === 0 };
  if (owed > 1 << 20) return { confident: false, exact: false };
  return { confident: true, exact: true, completion: Buffer.alloc(owed, 'x') };
}

/** Where an HTTP chunked body stands: done (and how many bytes follow it), or data bytes still owed. */
function chunkedState(body: Buffer): { done: boolean; rest: number; owed: number } {
  let pos = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', pos);
    if (eol < 0) return { done: false, rest: 0, owed: 0 };
    const sizeText = body.subarray(pos, eol).toString('latin1').split(';')[0];
    // Node refuses a size that is not hex: an answer is owed.
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) return { done: true, rest: 1, owed: 0 };
    const size = parseInt(sizeText, 16);
    if (size === 0) {
      const trailerEnd = body.indexOf('\r\n', eol + 2) === eol + 2 ? eol + 4 : body.indexOf('\r\n\r\n', eol + 2) + 4;
      if (trailerEnd < 4) return { done: false, rest: 0, owed: 0 };
      return { done: true, rest: body.length - trailerEnd, owed: 0 };
    }
    if (eol + 2 + size > body.length) return { done: false, rest: 0, owed: eol + 2 + size - body.length };
    pos = eol + 2 + size + 2;
    if (pos > body.length) return { done: false, rest: 0, owed: 0 };
  }
}

// ---------------------------------------------------------------------------
// Answers

interface Answer {
  status: number;
  headers: Map<string, string[]>;
  body: Buffer;
  /** Bytes consumed from the stream. */
  length: number;
}

type Parse = Answer | 'incomplete' | { malformed: string };

function parseAnswer(buf: Buffer, head: boolean, closed: boolean): Parse {
  let pos = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', pos);
    if (end < 0) return closed ? { malformed: 'ended inside the header block' } : 'incomplete';
    const [statusLine, ...lines] = buf.subarray(pos, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(statusLine);
    if (!m) return { malformed: `status line ${JSON.stringify(statusLine.slice(0, 100))}` };
    const headers = new Map<string, string[]>();
    for (const line of lines) {
      const hm = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/.exec(line);
      if (!hm) return { malformed: `header line ${JSON.stringify(line.slice(0, 100))}` };
      const name = hm[1].toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), hm[2]]);
    }
    const status = Number(m[1]);
    const start = end + 4;
    if (status >= 100 && status < 200) {
      pos = start;
      continue;
    }
    if (head || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0), length: start };
    const te = headers.get('transfer-encoding');
    if (te) {
      if (te.join(',').trim().toLowerCase() !== 'chunked') return { malformed: `transfer-encoding ${te}` };
      const parts: Buffer[] = [];
      let p = start;
      for (;;) {
        const eol = buf.indexOf('\r\n', p);
        if (eol < 0) return closed ? { malformed: 'chunked body cut off' } : 'incomplete';
        const sizeText = buf.subarray(p, eol).toString('latin1');
        if (!/^[0-9a-fA-F]+(;.*)?$/.test(sizeText)) return { malformed: `chunk size ${JSON.stringify(sizeText.slice(0, 40))}` };
        const size = parseInt(sizeText, 16);
        if (size === 0) {
          if (buf.length < eol + 4) return closed ? { malformed: 'chunked body cut off' } : 'incomplete';
          return { status, headers, body: Buffer.concat(parts), length: eol + 4 };
        }
        if (buf.length < eol + 2 + size + 2) return closed ? { malformed: 'chunked body cut off' } : 'incomplete';
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        p = eol + 2 + size + 2;
      }
    }
    const cl = headers.get('content-length');
    if (cl) {
      if (cl.length > 1 || !/^\d+$/.test(cl[0])) return { malformed: `content-length ${cl}` };
      const n = Number(cl[0]);
      if (buf.length < start + n) return closed ? { malformed: `body cut off at ${buf.length - start} of ${n} bytes` } : 'incomplete';
      return { status, headers, body: buf.subarray(start, start + n), length: start + n };
    }
    // Delimited by the end of the connection.
    return closed ? { status, headers, body: buf.subarray(start), length: buf.length } : 'incomplete';
  }
}

interface Exchange {
  answers: Answer[];
  malformed?: string;
  hung: boolean;
  finSent: boolean;
  closedEarly: boolean;
  ms: number;
}

const FOLLOW_UP = (port: number): Buffer => Buffer.from(`GET ${objectPath(SENTINEL_KEY)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);

function methodOf(bytes: Buffer): string {
  return bytes.subarray(0, Math.max(0, bytes.indexOf(' '))).toString('latin1');
}

function exchange(c: Case): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(c.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const answers: Answer[] = [];
    let finSent = false;
    let finished = false;
    const head = methodOf(c.bytes) === 'HEAD';
    const finish = (r: Omit<Exchange, 'answers' | 'finSent' | 'ms'>): void => {
      if (finished) return;
      finished = true;
      clearTimeout(finTimer);
      clearTimeout(hangTimer);
      socket.destroy();
      resolve({ ...r, answers, finSent, ms: Date.now() - started });
    };
    // Reads what arrived; true when every answer owed is in.
    const consume = (closed: boolean): boolean => {
      for (;;) {
        const want = c.followUp && answers.length === 1 && !(answers[0].headers.get('connection') ?? []).some((v) => /close/i.test(v)) ? 2 : 1;
        if (answers.length >= want) return true;
        if (buf.length === 0) return false;
        const p = parseAnswer(buf, answers.length === 0 ? head : false, closed);
        if (p === 'incomplete') return false;
        if ('malformed' in p) {
          finish({ malformed: p.malformed, hung: false, closedEarly: false });
          return false;
        }
        answers.push(p);
        buf = buf.subarray(p.length);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (consume(false)) finish({ hung: false, closedEarly: false });
    });
    socket.on('close', () => {
      if (finished) return;
      if (consume(true)) finish({ hung: false, closedEarly: false });
      else finish({ hung: false, closedEarly: true });
    });
    socket.on('error', () => { /* a reset shows as close */ });
    socket.on('connect', () => {
      socket.write(c.bytes);
      if (c.completion) socket.write(c.completion);
      if (c.followUp) socket.write(FOLLOW_UP(c.port));
    });
    const finTimer = setTimeout(() => {
      if (c.confident || buf.length > 0) return;
      finSent = true;
      socket.end();
    }, FIN_AFTER_MS);
    const hangTimer = setTimeout(() => finish({ hung: true, closedEarly: false }), ANSWER_WITHIN_MS);
  });
}

// ---------------------------------------------------------------------------
// What every answer must be

const STACK_LINE = /\n\s+at [^\n]*(:\d+:\d+|<anonymous>|native)\)?/;

function statusOf(code: string): number | undefined {
  try {
    return new S3Error(code as S3ErrorCode).status;
  } catch {
    return undefined;
  }
}

function errorCode(body: Buffer): { code?: string; problem?: string } {
  const parser = sax.parser(true);
  const stack: string[] = [];
  let code: string | undefined;
  let text = '';
  parser.onerror = (err) => { throw err; };
  parser.onopentag = (tag) => { stack.push(tag.name); text = ''; };
  parser.ontext = (s) => { text += s; };
  parser.onclosetag = (name) => {
    if (stack.length === 2 && stack[0] === 'Error' && name === 'Code') code = text;
    stack.pop();
  };
  try {
    parser.write(body.toString('utf8')).close();
  } catch (err) {
    return { problem: `error body is not XML: ${(err as Error).message.split('\n')[0]}` };
  }
  if (code === undefined) return { problem: 'error body without <Error><Code>' };
  return { code };
}

/** What is wrong with an answer, or undefined; `label` names it for the tally. */
function judge(a: Answer, head: boolean): { label: string; problem?: string } {
  const server = a.headers.get('server')?.[0];
  const origin = server === 'tempo-s3-shard' ? 'proxy' : server === 'MinIO' ? 'minio' : a.headers.has('x-amz-request-id') ? 'unknown' : 'node';
  const text = a.body.toString('latin1');
  if (STACK_LINE.test(text)) return { label: `${a.status} stack`, problem: 'the body carries a stack trace' };
  if (a.status < 200 || a.status > 599) return { label: `${a.status}`, problem: `status ${a.status}` };
  if (a.status < 400) return { label: `${a.status}` };
  if (origin === 'node') {
    // Node's own answer to bytes that are not HTTP/1.1: no handler ran.
    const ok = [400, 408, 413, 417, 431, 505].includes(a.status) && a.body.length === 0;
    return { label: `${a.status} (node)`, problem: ok ? undefined : `a bare ${a.status} with ${a.body.length} body bytes` };
  }
  let code: string | undefined;
  if (head) {
    if (a.body.length > 0) return { label: `${a.status} HEAD`, problem: 'an error answer to HEAD with a body' };
    code = a.headers.get('x-amz-error-code')?.[0];
    if (code === undefined) return { label: `${a.status} HEAD (${origin})`, problem: origin === 'proxy' ? 'no x-amz-error-code' : undefined };
  } else {
    const parsed = errorCode(a.body);
    if (parsed.problem) return { label: `${a.status} (${origin})`, problem: parsed.problem };
    code = parsed.code!;
  }
  const label = `${a.status} ${code} (${origin})`;
  // MinIO's own 500s (it has a few for query values it fails to parse) pass
  // through verbatim; they are listed as worth a look, not failed here.
  if (origin !== 'minio' && (code === 'InternalError' || a.status === 500)) return { label, problem: 'an internal error' };
  if (origin === 'proxy') {
    const status = statusOf(code);
    if (status === undefined) return { label, problem: `${code} is not in the catalogue` };
    if (status !== a.status) return { label, problem: `${code} answered with ${a.status}, the catalogue says ${status}` };
  }
  return { label };
}

// ---------------------------------------------------------------------------

const AUTH_CODES = new Set(['AccessDenied', 'SignatureDoesNotMatch', 'AuthorizationHeaderMalformed', 'InvalidAccessKeyId',
  'RequestTimeTooSkewed', 'XAmzContentSHA256Mismatch', 'InvalidRequest', 'InvalidArgument', 'IncompleteBody']);

// Answers that keep the contract but hint at a problem: the proxy blaming a
// healthy backend, or the backend refusing the proxy's own signature.
const NOTABLE = /^(50[23] |\d+ SignatureDoesNotMatch \(minio\)|5\d\d .*\(minio\))/;

type Fail = (req: unknown, res: { destroyed: boolean; getHeader(n: string): unknown }, err: unknown, ...rest: unknown[]) => void;

/** Records every error other than an S3Error that the proxy was about to
 * answer (as InternalError, or by cutting an answer short), by the request
 * id it answers with. Errors after the client went away answer nobody. */
function watchUnexpected(proxy: ShardProxy, into: Map<string, string>): void {
  const p = proxy as unknown as { fail: Fail };
  const original = p.fail.bind(proxy);
  p.fail = (req, res, err, ...rest) => {
    if (!isS3Error(err) && !res.destroyed) into.set(String(res.getHeader('x-amz-request-id')), (err as Error)?.stack ?? String(err));
    original(req, res, err, ...rest);
  };
}

async function seed(stack: Stack): Promise<Context> {
  const port = Number(new URL(stack.endpoint).port);
  const put = await request(`${stack.endpoint}${objectPath(SENTINEL_KEY)}`, { method: 'PUT', body: SENTINEL_BODY });
  await put.body.dump();
  if (put.statusCode !== 200) throw new Error(`seeding the sentinel: ${put.statusCode}`);
  for (const key of KEYS) {
    const r = await request(`${stack.endpoint}${objectPath(key)}`, { method: 'PUT', body: `body of ${key}` });
    await r.body.dump();
  }
  const create = await request(`${stack.endpoint}${objectPath('fuzz/mp')}?uploads`, { method: 'POST' });
  const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await create.body.text())?.[1];
  if (!uploadId) throw new Error('seeding the multipart upload');
  const part = await request(`${stack.endpoint}${objectPath('fuzz/mp')}?partNumber=1&uploadId=${encodeURIComponent(uploadId)}`,
    { method: 'PUT', body: 'part one' });
  await part.body.dump();
  return { uploadId, partEtag: String(part.headers.etag), port };
}

const shown = (b: Buffer): string => {
  const s = JSON.stringify(b.subarray(0, 1500).toString('latin1'));
  return b.length > 1500 ? `${s}... (${b.length} bytes)` : s;
};

t.test('raw HTTP fuzz against the proxy on MinIO', async (t) => {
  const crashes: string[] = [];
  // The requests in flight and the last few answered: the suspects of a crash.
  const inFlight = new Map<number, Case>();
  const recent: number[] = [];
  const onCrash = (err: unknown): void => {
    const suspects = [...inFlight].map(([i, c]) => `request ${i}: ${shown(c.bytes)}`).join('\n');
    crashes.push(`${(err as Error)?.stack ?? String(err)}\nin flight:\n${suspects}\njust answered: ${recent.join(', ')}`);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  t.teardown(() => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  });

  const stack = await startStack(t);
  const authStack = await startStack(t, {
    minio: stack.minio,
    extra: { clients: [{ access_key_id: CLIENT.accessKeyId, secret_access_key: CLIENT.secretAccessKey }] },
  });
  const unexpected = new Map<string, string>();
  watchUnexpected(stack.proxy, unexpected);
  watchUnexpected(authStack.proxy, unexpected);
  const logged = new Tally();
  for (const s of [stack, authStack]) {
    s.proxy.log.log = (level, msg, fields = {}) => logged.add(`${level} ${msg}${fields.code ? ` ${String(fields.code)}` : ''}`);
  }
  const ctx = await seed(stack);
  const authPort = Number(new URL(authStack.endpoint).port);
  t.comment(`fuzz seed ${SEED}, ${ITERATIONS} requests; FUZZ_SEED=${SEED} replays them`);

  // The corpus itself, signed and unbroken, must get past authentication, or
  // the signed half of the run would only ever test refusals.
  const pristine: string[] = [];
  for (let i = 0; pristine.length < 30; i++) {
    const c = buildCase(caseSeed(SEED ^ 0x51c4ed, i), ctx, authPort);
    if (!c.signed || !c.pristine) continue;
    const x = await exchange(c);
    const a = x.answers[0];
    const code = a && a.status >= 400 ? errorCode(a.body).code ?? a.headers.get('x-amz-error-code')?.[0] : undefined;
    pristine.push(`${a?.status ?? 'no answer'}${code ? ` ${code}` : ''}`);
    // An answer relayed from MinIO (copying a key onto itself is its
    // InvalidRequest) shows the request got past authentication.
    const fromBackend = a?.headers.get('server')?.[0] === 'MinIO';
    if (!a || (AUTH_CODES.has(code ?? '') && !fromBackend)) t.fail(`the sound signed request ${c.summary} got ${pristine[pristine.length - 1]}`, { bytes: shown(c.bytes) });
  }
  t.comment(`sound signed requests: ${pristine.join(', ')}`);

  const tally = new Tally();
  const notable = new Map<string, string[]>();
  // Failures by kind, each kind shown twice at most so that one bug does not hide another.
  const failures = new Tally();
  const fail = (i: number, c: Case, message: string, extra: Record<string, unknown> = {}): void => {
    const kind = message.replace(/\d+/g, 'N');
    failures.add(kind);
    if (failures.count(kind) <= 2) t.fail(`request ${i} (FUZZ_SEED=${SEED}): ${message}`, { request: c.summary, bytes: shown(c.bytes), ...extra });
  };
  let slowest = 0;
  let next = 0;
  const started = Date.now();
  const worker = async (): Promise<void> => {
    while (next < ITERATIONS) {
      const i = next++;
      const c = buildCase(caseSeed(SEED, i), ctx, authPort);
      inFlight.set(i, c);
      const x = await exchange(c);
      inFlight.delete(i);
      recent.push(i);
      if (recent.length > 2 * CONCURRENCY) recent.shift();
      slowest = Math.max(slowest, x.ms);
      if (x.hung) {
        tally.add('hung');
        fail(i, c, `no answer and no close within ${ANSWER_WITHIN_MS} ms${x.finSent ? ', the client having sent FIN' : ''}`);
        continue;
      }
      if (x.malformed) {
        tally.add('malformed');
        fail(i, c, `a malformed answer: ${x.malformed}`);
        continue;
      }
      if (x.answers.length === 0) {
        // Closing is the only answer to a client that gave up on its own request.
        tally.add(x.finSent ? 'closed after the client FIN' : 'closed without an answer');
        if (!x.finSent) fail(i, c, 'the connection closed without an answer');
        continue;
      }
      const first = x.answers[0];
      const verdict = judge(first, methodOf(c.bytes) === 'HEAD');
      tally.add(verdict.label);
      if (NOTABLE.test(verdict.label)) {
        const examples = notable.get(verdict.label) ?? [];
        if (examples.length < 3) notable.set(verdict.label, [...examples, `request ${i}: ${c.summary}: ${shown(c.bytes).slice(0, 600)}`]);
      }
      const id = first.headers.get('x-amz-request-id')?.[0];
      const thrown = id !== undefined ? unexpected.get(id) : undefined;
      if (thrown) fail(i, c, 'the proxy threw something other than an S3Error', { stack: thrown });
      else if (verdict.problem) fail(i, c, verdict.problem, { status: first.status, body: shown(first.body) });
      if (c.followUp && x.answers.length === 2) {
        const second = x.answers[1];
        tally.add('pipelined GET answered');
        if (c.port === authPort) {
          // Unsigned: the authenticating proxy refuses it, with its S3 error.
          if (second.status !== 403 || !second.body.includes('<Code>AccessDenied</Code>')) {
            fail(i, c, `the unsigned GET pipelined after it got ${second.status} ${shown(second.body)}`);
          }
        } else if (second.status !== 200 || !second.body.equals(SENTINEL_BODY)) {
          fail(i, c, `the GET pipelined after it got ${second.status} ${shown(second.body)}`);
        }
      } else if (c.followUp && x.closedEarly) {
        fail(i, c, 'the connection closed before the GET pipelined after it was answered, though the first answer kept it open');
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.comment(`${ITERATIONS} requests in ${((Date.now() - started) / 1000).toFixed(1)} s, slowest answer ${slowest} ms`);
  t.comment(`answers: ${tally}`);
  for (const [label, examples] of notable) t.comment(`worth a look, ${label}:\n${examples.join('\n')}`);
  t.comment(`the proxies logged: ${logged.size ? logged : 'nothing'}`);
  t.equal(failures.size, 0, 'every request got a well-formed answer that keeps the contract', { failures: failures.toString() });
  const stray = [...unexpected.values()];
  t.same(stray.length, 0, 'the proxy raised nothing but S3Errors', { stacks: stray.slice(0, 3) });
  t.equal(crashes.length, 0, 'no uncaught exception or unhandled rejection', { first: crashes.slice(0, 3) });

  const got = await request(`${stack.endpoint}${objectPath(SENTINEL_KEY)}`);
  t.equal(got.statusCode, 200, 'the proxy still serves a plain GET');
  t.ok(Buffer.from(await got.body.arrayBuffer()).equals(SENTINEL_BODY), 'with the right bytes');
  const refused = await request(`${authStack.endpoint}${objectPath(SENTINEL_KEY)}`);
  t.equal(refused.statusCode, 403, 'the authenticating proxy still refuses an unsigned GET');
  t.match(await refused.body.text(), '<Code>AccessDenied</Code>');
  const listing = await request(`${stack.endpoint}/${BUCKET}?list-type=2`);
  t.equal(listing.statusCode, 200, 'and still lists');
  t.match(await listing.body.text(), `<Key>${SENTINEL_KEY}</Key>`);

  // Nothing a request named got out of the shard buckets, or into the wrong one.
  const buckets = (await stack.direct.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name).sort();
  t.same(buckets, [...stack.shards].sort(), 'MinIO holds only the shard buckets');
  // MinIO drops a key's leading slashes: `/x` is placed as `/x` and stored as `x`.
  const ring = new Ring(stack.shards);
  const misplaced: string[] = [];
  for (const [bucket, keys] of await stack.shardContents()) {
    for (const key of keys) {
      if (![0, 1, 2, 3].some((n) => ring.locate('/'.repeat(n) + key) === bucket)) misplaced.push(`${bucket}/${key}`);
    }
  }
  t.same(misplaced, [], 'every stored object sits in the shard its key maps to');
});

// Found by the fuzz run: the aws-chunked decoder handed to the backend
// request as its body had no 'error' listener until undici attached one, so
// framing that failed early was an unhandled 'error' event, which ended the
// process.
t.test('a malformed aws-chunked body is refused without crashing the process', async (t) => {
  const crashes: unknown[] = [];
  const onCrash = (err: unknown): void => { crashes.push(err); };
  process.on('uncaughtException', onCrash);
  t.teardown(() => { process.off('uncaughtException', onCrash); });
  const stack = await startStack(t);
  const port = Number(new URL(stack.endpoint).port);
  const body = 'zz;chunk-signature=00\r\n';
  const c: Case = {
    bytes: Buffer.from(`PUT ${objectPath('fuzz/a')} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\nx-amz-decoded-content-length: 10\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`),
    confident: true, followUp: false, port, signed: false, pristine: false, summary: 'PUT with a chunk size that is not hex',
  };
  const x = await exchange(c);
  await new Promise((r) => setTimeout(r, 200));
  t.same(crashes.map((e) => String(e)), [], 'no unhandled error event');
  t.equal(x.answers[0]?.status, 400, 'answered 400');
  t.match(x.answers[0]?.body.toString() ?? '', '<Code>InvalidArgument</Code>');
});

// Found by the fuzz run: DeleteObjects bodies were parsed in time that grew
// with the square of their nesting depth, and the event loop is shared.
t.test('a deeply nested DeleteObjects body does not stall the proxy', async (t) => {
  const stack = await startStack(t);
  const depth = 20000;
  const body = Buffer.from(`<Delete>${'<a>'.repeat(depth)}${'</a>'.repeat(depth)}<Object><Key>k</Key></Object></Delete>`);
  // The proxy runs in this process: how long its event loop stalls is how
  // long every other client of it would wait.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const started = Date.now();
  const r = await request(`${stack.endpoint}/${BUCKET}?delete`, {
    method: 'POST', body, headers: { 'content-md5': md5(body), 'content-type': 'application/xml' },
  });
  const text = await r.body.text();
  const ms = Date.now() - started;
  lag.disable();
  const stallMs = lag.max / 1e6;
  t.ok(r.statusCode === 200 || /<Code>MalformedXML<\/Code>/.test(text), `answered ${r.statusCode} with S3's codes`);
  t.ok(ms < 2000, `a ${body.length}-byte body nested ${depth} deep answered in ${ms} ms (under 2 s)`);
  t.ok(stallMs < 500, `the event loop stalled for at most ${stallMs.toFixed(0)} ms meanwhile (under 500 ms)`);
});
