// AWS Signature Version 4 verification of the requests clients send the
// proxy. The proxy re-signs every request with its own backend credentials,
// so this is the only place a client's identity is proven: it has to rebuild
// the canonical request exactly as S3 does (a looser reading would accept
// what S3 refuses, a stricter one would refuse what SDKs send) and answer
// with the codes S3 answers with, because SDKs act on them (a region named in
// AuthorizationHeaderMalformed, a retry after RequestTimeTooSkewed).

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { streamingKind, type ChunkSignatureContext } from './aws-chunked';
import type { Credentials } from './config';
import { S3Error, type S3ErrorCode } from './errors';
import { NON_ASCII, headerText } from './sigv4';

export interface AuthInput {
  method: string;
  /** The raw req.url: path and ?query as received. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface AuthResult {
  /** null for an anonymous request. */
  accessKeyId: string | null;
  /** Set when the payload is a signed aws-chunked stream whose chunks must be verified. */
  chunk?: ChunkSignatureContext;
}

export interface AuthenticatorOptions {
  clients: Credentials[];
  /** The regions a credential scope may name; errors name the first as the one expected. */
  regions: string[];
  allowAnonymous: boolean;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
const SERVICE = 's3';
const TERMINAL = 'aws4_request';
const MAX_SKEW_MS = 15 * 60 * 1000;
const MAX_EXPIRES_S = 604800;
// Keys change once a day per client and region; this only stops a flood of
// made-up dates from growing the cache.
const KEY_CACHE_SIZE = 64;
const CONTENT_SHA256 = 'x-amz-content-sha256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const PAYLOAD_HASHES = new Set([
  UNSIGNED_PAYLOAD,
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
]);
const QUERY_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'];

const MALFORMED_HEADER = 'The authorization header is malformed; ';
const MALFORMED_QUERY = 'Error parsing the X-Amz-Credential parameter; ';

/** What a signature claims, read from the Authorization header or the query. */
interface Claim {
  accessKeyId: string;
  scope: string;
  region: string;
  scopeDate: string;
  /** The signed headers, lower-case and sorted, as the canonical request lists them. */
  signedHeaders: string[];
  signature: string;
  /** The request time as it goes into the string to sign. */
  amzDate: string;
  payloadHash: string;
  canonicalQuery: string;
}

/** A query parameter, decoded for reading and re-encoded for the canonical query. */
interface Param { key: string; value: string; encodedKey: string; encodedValue: string }

export class Authenticator {
  private readonly secrets: Map<string, string>;
  private readonly regions: string[];
  private readonly allowAnonymous: boolean;
  private readonly now: () => number;
  private readonly keys = new Map<string, Buffer>();

  constructor(opts: AuthenticatorOptions) {
    if (opts.regions.length === 0) throw new Error('Authenticator needs at least one region');
    this.secrets = new Map(opts.clients.map((c) => [c.accessKeyId, c.secretAccessKey]));
    this.regions = opts.regions;
    this.allowAnonymous = opts.allowAnonymous;
    this.now = opts.now ?? Date.now;
  }

  /** Throws S3Error when the request is not signed by a known client (or anonymous where allowed). */
  authenticate(input: AuthInput): AuthResult {
    const q = input.url.indexOf('?');
    const rawPath = q < 0 ? input.url : input.url.slice(0, q);
    const params = parseQuery(q < 0 ? '' : input.url.slice(q + 1));
    const authorization = headerValue(input.headers.authorization);
    const presigned = params.some((p) => QUERY_PARAMS.includes(p.key));
    const v2Query = params.some((p) => p.key === 'AWSAccessKeyId');

    let claim: Claim;
    if (authorization !== undefined) {
      if (presigned || v2Query) {
        throw new S3Error('InvalidArgument', 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, ' +
          'Signature query string parameter or the Authorization header should be specified');
      }
      claim = this.fromHeader(authorization, input.headers, params);
    } else if (presigned) {
      claim = this.fromQuery(params, input.headers);
    } else if (v2Query) {
      throw sigV2();
    } else {
      if (!this.allowAnonymous) throw new S3Error('AccessDenied');
      return { accessKeyId: null };
    }

    checkHeadersSigned(claim.signedHeaders, input.headers);
    const secret = this.secrets.get(claim.accessKeyId);
    if (secret === undefined) throw new S3Error('InvalidAccessKeyId');

    const signingKey = this.signingKey(claim.accessKeyId, secret, claim.scopeDate, claim.region);
    const signatureWith = (fold: (value: string) => string): Buffer => {
      const canonicalRequest = [
        input.method,
        canonicalUri(rawPath),
        claim.canonicalQuery,
        claim.signedHeaders.map((name) => `${name}:${canonicalHeaderValue(input.headers[name], fold)}\n`).join(''),
        claim.signedHeaders.join(';'),
        claim.payloadHash,
      ].join('\n');
      // Node hands header bytes over as latin1 characters; hashing them back as
      // latin1 hashes the bytes the client signed. Everything else is ASCII.
      const stringToSign = [ALGORITHM, claim.amzDate, claim.scope,
        createHash('sha256').update(canonicalRequest, 'latin1').digest('hex')].join('\n');
      return createHmac('sha256', signingKey).update(stringToSign).digest();
    };
    const given = /^[0-9a-fA-F]{64}$/.test(claim.signature) ? Buffer.from(claim.signature, 'hex') : Buffer.alloc(0);
    const matches = (signature: Buffer) => given.length === signature.length && timingSafeEqual(given, signature);
    let expected = signatureWith(foldAscii);
    // Signers disagree on white space beyond ASCII (a no-break space, say):
    // the AWS SDKs for JavaScript and Go keep it, botocore and aws4 fold it.
    if (!matches(expected) && claim.signedHeaders.some((name) => NON_ASCII.test(String(input.headers[name] ?? '')))) {
      expected = signatureWith(foldUnicode);
    }
    if (!matches(expected)) throw new S3Error('SignatureDoesNotMatch');

    const kind = streamingKind(claim.payloadHash);
    if (kind === 'signed' || kind === 'signed-trailer') {
      return {
        accessKeyId: claim.accessKeyId,
        chunk: { signingKey, amzDate: claim.amzDate, scope: claim.scope, seedSignature: expected.toString('hex') },
      };
    }
    return { accessKeyId: claim.accessKeyId };
  }

  private fromHeader(authorization: string, headers: IncomingHttpHeaders, params: Param[]): Claim {
    if (/^AWS [^:\s]+:/.test(authorization)) throw sigV2();
    const space = authorization.indexOf(' ');
    if (space < 0 || authorization.slice(0, space) !== ALGORITHM) {
      throw new S3Error('InvalidArgument', 'Unsupported Authorization Type');
    }
    const fields = new Map<string, string>();
    let wellFormed = true;
    for (const part of authorization.slice(space + 1).split(',')) {
      const eq = part.indexOf('=');
      const name = part.slice(0, eq).trim();
      if (eq < 0 || fields.has(name)) wellFormed = false;
      else fields.set(name, part.slice(eq + 1).trim());
    }
    const credential = fields.get('Credential');
    const signedHeaders = fields.get('SignedHeaders');
    const signature = fields.get('Signature');
    if (!wellFormed || fields.size !== 3 || credential === undefined || signedHeaders === undefined || signature === undefined) {
      throw new S3Error('AuthorizationHeaderMalformed', MALFORMED_HEADER +
        'the authorization header requires three components: Credential, SignedHeaders, and Signature.');
    }
    const cred = this.credential(credential, 'AuthorizationHeaderMalformed', MALFORMED_HEADER);

    const time = requestTime(headers);
    if (time === undefined) throw new S3Error('AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    if (cred.scopeDate !== time.amzDate.slice(0, 8)) {
      throw new S3Error('AuthorizationHeaderMalformed', MALFORMED_HEADER + 'Invalid credential date. Date is not the same as X-Amz-Date.');
    }
    if (Math.abs(this.now() - time.ms) > MAX_SKEW_MS) throw new S3Error('RequestTimeTooSkewed');

    const payloadHash = headerValue(headers[CONTENT_SHA256]);
    if (payloadHash === undefined) throw new S3Error('InvalidRequest', `Missing required header for this request: ${CONTENT_SHA256}`);
    checkPayloadHash(payloadHash);

    return {
      ...cred,
      signedHeaders: signedHeaderList(signedHeaders),
      signature,
      amzDate: time.amzDate,
      payloadHash,
      canonicalQuery: canonicalQuery(params),
    };
  }

  private fromQuery(params: Param[], headers: IncomingHttpHeaders): Claim {
    const get = (key: string) => params.find((p) => p.key === key)?.value;
    const [algorithm, credential, date, expires, signedHeaders, signature] = QUERY_PARAMS.map(get);
    if (algorithm === undefined || credential === undefined || date === undefined || expires === undefined ||
      signedHeaders === undefined || signature === undefined) {
      throw new S3Error('AuthorizationQueryParametersError', 'Query-string authentication version 4 requires the X-Amz-Algorithm, ' +
        'X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
    }
    if (algorithm !== ALGORITHM) {
      throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Algorithm only supports "${ALGORITHM}"`);
    }
    const ms = parseAmzDate(date);
    if (ms === undefined) {
      throw new S3Error('AuthorizationQueryParametersError', 'X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd\'T\'HHmmss\'Z\'"');
    }
    if (!/^-?[0-9]+$/.test(expires)) throw new S3Error('AuthorizationQueryParametersError', 'X-Amz-Expires should be a number');
    const expiresS = Number(expires);
    if (expiresS < 1) throw new S3Error('AuthorizationQueryParametersError', 'X-Amz-Expires must be at least one second');
    if (expiresS > MAX_EXPIRES_S) {
      throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Expires must be less than a week (in seconds) that is ${MAX_EXPIRES_S}`);
    }
    const cred = this.credential(credential, 'AuthorizationQueryParametersError', MALFORMED_QUERY);
    if (cred.scopeDate !== date.slice(0, 8)) {
      throw new S3Error('AuthorizationQueryParametersError', MALFORMED_QUERY + 'Invalid credential date. Date is not the same as X-Amz-Date.');
    }
    // A presigned URL is meant to be used long after it was signed: its own
    // expiry replaces the skew window, which only still guards the future.
    const now = this.now();
    if (ms - now > MAX_SKEW_MS) throw new S3Error('AccessDenied', 'Request is not yet valid');
    if (now > ms + expiresS * 1000) throw new S3Error('AccessDenied', 'Request has expired');

    const list = signedHeaderList(signedHeaders);
    let payloadHash = UNSIGNED_PAYLOAD;
    if (list.includes(CONTENT_SHA256)) {
      payloadHash = headerValue(headers[CONTENT_SHA256]) ?? '';
      checkPayloadHash(payloadHash);
    }
    return {
      ...cred,
      signedHeaders: list,
      signature,
      amzDate: date,
      payloadHash,
      canonicalQuery: canonicalQuery(params.filter((p) => p.key !== 'X-Amz-Signature')),
    };
  }

  private credential(value: string, code: S3ErrorCode, prefix: string) {
    const parts = value.split('/');
    if (parts.length !== 5 || parts[0] === '') {
      throw new S3Error(code, prefix + 'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".');
    }
    const [accessKeyId, scopeDate, region, service, terminal] = parts;
    if (!this.regions.includes(region)) {
      throw new S3Error(code, `${prefix}the region '${region}' is wrong; expecting '${this.regions[0]}'`);
    }
    if (service !== SERVICE) throw new S3Error(code, `${prefix}incorrect service "${service}". This endpoint belongs to "${SERVICE}".`);
    if (terminal !== TERMINAL) throw new S3Error(code, `${prefix}incorrect terminal "${terminal}". This endpoint uses "${TERMINAL}".`);
    return { accessKeyId, scopeDate, region, scope: parts.slice(1).join('/') };
  }

  private signingKey(accessKeyId: string, secret: string, date: string, region: string): Buffer {
    const id = `${accessKeyId}/${date}/${region}`;
    let key = this.keys.get(id);
    if (key === undefined) {
      const hmac = (k: string | Buffer, data: string) => createHmac('sha256', k).update(data).digest();
      key = hmac(hmac(hmac(hmac('AWS4' + secret, date), region), SERVICE), TERMINAL);
      if (this.keys.size >= KEY_CACHE_SIZE) this.keys.delete(this.keys.keys().next().value!);
      this.keys.set(id, key);
    }
    return key;
  }
}

function sigV2(): S3Error {
  return new S3Error('InvalidRequest', 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.');
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

function checkPayloadHash(value: string): void {
  if (!PAYLOAD_HASHES.has(value) && !/^[0-9a-fA-F]{64}$/.test(value)) {
    throw new S3Error('InvalidArgument', `${CONTENT_SHA256} must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, ` +
      'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a valid sha256 value.');
  }
}

function signedHeaderList(value: string): string[] {
  return value.split(';').map((s) => s.trim().toLowerCase()).filter((s) => s !== '').sort();
}

// S3 refuses a signature that leaves out the host (it would let the request be
// replayed elsewhere) or any x-amz- header present, since those change what a
// request does (x-amz-copy-source turns a PUT into a copy). The content hash is
// exempt: S3 tolerates it unsigned, and the canonical request carries it anyway.
function checkHeadersSigned(signed: string[], headers: IncomingHttpHeaders): void {
  const unsigned = Object.keys(headers).filter((name) =>
    (name === 'host' || (name.startsWith('x-amz-') && name !== CONTENT_SHA256)) && !signed.includes(name));
  if (!signed.includes('host') || unsigned.length > 0) {
    throw new S3Error('AccessDenied', 'There were headers present in the request which were not signed');
  }
}

function canonicalHeaderValue(v: string | string[] | undefined, fold: (value: string) => string): string {
  return (Array.isArray(v) ? v : [v ?? '']).map(fold).join(',');
}


// SigV4 trims a value and folds its runs of white space. ASCII white space
// only: on Node's latin1 characters, one a byte, \s would also take the byte
// 0xA0 inside à or Š.
function foldAscii(latin1: string): string {
  return latin1.replace(/^[ \t]+|[ \t]+$/g, '').replace(/[ \t]+/g, ' ');
}

/** Folds the white space of the value's UTF-8 text, as Unicode counts it. */
function foldUnicode(latin1: string): string {
  const text = headerText(latin1);
  if (text === undefined) return foldAscii(latin1);
  return Buffer.from(text.trim().replace(/\s+/g, ' '), 'utf8').toString('latin1');
}

function requestTime(headers: IncomingHttpHeaders): { ms: number; amzDate: string } | undefined {
  const amz = headerValue(headers['x-amz-date']);
  if (amz !== undefined) {
    const ms = parseAmzDate(amz);
    return ms === undefined ? undefined : { ms, amzDate: amz };
  }
  const date = headers.date;
  if (date === undefined) return undefined;
  const ms = Date.parse(date);
  if (Number.isNaN(ms)) return undefined;
  return { ms, amzDate: new Date(ms).toISOString().replace(/[-:]|\.\d{3}/g, '') };
}

function parseAmzDate(s: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return undefined;
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  // Date.UTC rolls 20261332 over into the next year; a round trip catches it.
  return new Date(ms).toISOString().replace(/[-:]|\.\d{3}/g, '') === s ? ms : undefined;
}

// Paths and query strings are decoded to bytes, not to strings, so that a
// request whose escapes are not UTF-8 still canonicalises to what its signer
// hashed. Node gives the request line to us as latin1, one char per byte.
function decode(s: string, plusIsSpace: boolean): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 0x2b && plusIsSpace) {
      out.push(0x20);
    } else if (c < 0x100) {
      out.push(c);
    } else {
      out.push(...Buffer.from(s[i], 'utf8'));
    }
  }
  return Buffer.from(out);
}

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

function encode(bytes: Buffer, keepSlash: boolean): string {
  let out = '';
  for (const b of bytes) {
    const ch = String.fromCharCode(b);
    out += (b < 0x80 && UNRESERVED.test(ch)) || (keepSlash && ch === '/') ? ch : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

// S3 does not normalise `.`, `..` or `//` segments: they are part of the key.
function canonicalUri(rawPath: string): string {
  return encode(decode(rawPath === '' ? '/' : rawPath, false), true);
}

function parseQuery(query: string): Param[] {
  const params: Param[] = [];
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decode(eq < 0 ? part : part.slice(0, eq), true);
    const value = decode(eq < 0 ? '' : part.slice(eq + 1), true);
    params.push({ key: key.toString('utf8'), value: value.toString('utf8'), encodedKey: encode(key, false), encodedValue: encode(value, false) });
  }
  return params;
}

function canonicalQuery(params: Param[]): string {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  // Sorting whole "k=v" strings would put "a-b=1" before "a=1"; sort by key, then value.
  return [...params].sort((a, b) => cmp(a.encodedKey, b.encodedKey) || cmp(a.encodedValue, b.encodedValue))
    .map((p) => `${p.encodedKey}=${p.encodedValue}`).join('&');
}
