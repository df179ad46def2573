// The S3 error catalogue: every error the proxy raises has a stable S3 code
// and the HTTP status S3 answers it with, so a client's retry and "not found"
// logic (Tempo recognises absence only by `NoSuchKey`) sees what it would see
// talking to S3 directly.

const CATALOGUE = {
  AccessDenied: [403, 'Access Denied.'],
  AuthorizationHeaderMalformed: [400, 'The authorization header is malformed.'],
  AuthorizationQueryParametersError: [400, 'The authorization query parameters are malformed.'],
  BadDigest: [400, 'The Content-MD5 or checksum value that you specified did not match what the server received.'],
  BucketAlreadyOwnedByYou: [409, 'Your previous request to create the named bucket succeeded and you already own it.'],
  EntityTooLarge: [400, 'Your proposed upload exceeds the maximum allowed object size.'],
  IncompleteBody: [400, 'You did not provide the number of bytes specified by the Content-Length HTTP header.'],
  InternalError: [500, 'We encountered an internal error. Please try again.'],
  InvalidAccessKeyId: [403, 'The AWS Access Key Id you provided does not exist in our records.'],
  InvalidArgument: [400, 'Invalid Argument'],
  InvalidBucketName: [400, 'The specified bucket is not valid.'],
  InvalidChunkSizeError: [403, 'Only the last chunk is allowed to have a size less than 8192 bytes'],
  InvalidDigest: [400, 'The Content-MD5 you specified is not valid.'],
  InvalidURI: [400, 'Couldn\'t parse the specified URI.'],
  InvalidRange: [416, 'The requested range is not satisfiable'],
  InvalidRequest: [400, 'Invalid Request'],
  KeyTooLongError: [400, 'Your key is too long'],
  MalformedXML: [400, 'The XML you provided was not well-formed or did not validate against our published schema.'],
  MethodNotAllowed: [405, 'The specified method is not allowed against this resource.'],
  MissingContentLength: [411, 'You must provide the Content-Length HTTP header.'],
  NoSuchBucket: [404, 'The specified bucket does not exist'],
  NoSuchKey: [404, 'The specified key does not exist.'],
  NoSuchUpload: [404, 'The specified multipart upload does not exist.'],
  NoSuchVersion: [404, 'The specified version does not exist.'],
  NotImplemented: [501, 'A header you provided implies functionality that is not implemented.'],
  PreconditionFailed: [412, 'At least one of the pre-conditions you specified did not hold'],
  RequestTimeTooSkewed: [403, 'The difference between the request time and the server\'s time is too large.'],
  RequestTimeout: [400, 'Your socket connection to the server was not read from or written to within the timeout period.'],
  SignatureDoesNotMatch: [403, 'The request signature we calculated does not match the signature you provided.'],
  BadGateway: [502, 'The backend storage answered with something that is not S3.'],
  ServiceUnavailable: [503, 'The backend storage could not be reached. Please try again.'],
  XAmzContentSHA256Mismatch: [400, 'The provided \'x-amz-content-sha256\' header does not match what was computed.'],
} as const satisfies Record<string, readonly [number, string]>;

export type S3ErrorCode = keyof typeof CATALOGUE;

export class S3Error extends Error {
  readonly code: S3ErrorCode;
  readonly status: number;

  constructor(code: S3ErrorCode, message?: string) {
    super(message ?? CATALOGUE[code][1]);
    this.name = 'S3Error';
    this.code = code;
    this.status = CATALOGUE[code][0];
  }
}

export function isS3Error(err: unknown): err is S3Error {
  return err instanceof S3Error;
}

/** Text as XML character data or attribute value. A literal CR would reach
 * the client as LF after XML end-of-line normalisation, so it is written as
 * a reference. Other control characters, which XML 1.0 cannot carry at all,
 * become hex references as S3 writes them (a client that must read them asks
 * for encoding-type=url). */
export function xmlEscape(s: string): string {
  // One pass, and no copy when nothing needs escaping: listings escape
  // every ETag (its quotes) and every key, name or value.
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let ref: string;
    if (c < 0x20) {
      if (c === 0x09 || c === 0x0a) continue;
      ref = c === 0x0d ? '&#13;' : `&#x${c.toString(16)};`;
    } else if (c === 0x26) ref = '&#38;';
    else if (c === 0x3c) ref = '&#60;';
    else if (c === 0x3e) ref = '&#62;';
    else if (c === 0x22) ref = '&#34;';
    else if (c === 0x27) ref = '&#39;';
    else continue;
    out += s.slice(from, i) + ref;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

// Error bodies must parse whatever the client sent: characters XML 1.0
// cannot carry at all become U+FFFD there.
function errorText(s: string): string {
  return xmlEscape(s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd'));
}

export function errorXml(err: S3Error, resource: string, requestId: string): string {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${err.code}</Code><Message>${errorText(err.message)}</Message>` +
    `<Resource>${errorText(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`;
}
