// The client-facing side of a merged listing: the entries the merger keeps,
// and the S3 result documents (ListBucketResult V1/V2, ListVersionsResult,
// ListMultipartUploadsResult) written from them.

import { xmlEscape } from './errors';
import type { ListRequest } from './list-merge';

export interface XmlNode {
  name: string;
  text: string;
  children: XmlNode[];
}

export type EntryElement = 'Contents' | 'Version' | 'DeleteMarker' | 'Upload' | 'CommonPrefixes';

export interface Entry {
  element: EntryElement;
  /** The key, or the common prefix, decoded. */
  name: string;
  /** UTF-8 of `name`: listings are ordered by these bytes. */
  bytes: Buffer;
  /** VersionId or UploadId. */
  id: string | undefined;
  /** The entry's child elements as the backend sent them (Key is rewritten on output). */
  fields: XmlNode[];
}

const S3_XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const CHUNK = 16 * 1024;

// A literal CR would reach the client as LF after XML end-of-line
// normalisation; a character reference survives.
function escapeText(s: string): string {
  return xmlEscape(s).replace(/\r/g, '&#13;');
}

const UNRESERVED = /[A-Za-z0-9\-_.~/]/;

/** Every byte of the UTF-8 except A-Z a-z 0-9 - _ . ~ and `/` as %XX, so both
 * form decoders (`+` is a space) and plain percent decoders read it back. */
export function urlEncodeName(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && UNRESERVED.test(c) ? c : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
  }
  return out;
}

function renderNode(n: XmlNode): string {
  const inner = n.children.length > 0 ? n.children.map(renderNode).join('') : escapeText(n.text);
  return `<${n.name}>${inner}</${n.name}>`;
}

function renderEntry(e: Entry, name: string, withOwner: boolean): string {
  if (e.element === 'CommonPrefixes') return `<CommonPrefixes><Prefix>${name}</Prefix></CommonPrefixes>`;
  let out = `<${e.element}>`;
  for (const f of e.fields) {
    if (f.name === 'Key') out += `<Key>${name}</Key>`;
    else if (f.name !== 'Owner' || withOwner) out += renderNode(f);
  }
  return `${out}</${e.element}>`;
}

/**
 * The result document for one page, in pieces of about 16 KiB. `truncated`
 * pages resume after their last entry; V2 carries that as
 * `nextContinuationToken`.
 */
export function* renderListing(
  req: ListRequest,
  entries: readonly Entry[],
  truncated: boolean,
  nextContinuationToken: string | undefined,
): Generator<string> {
  const encodeName = (s: string, bytes: Buffer = Buffer.from(s, 'utf8')): string =>
    req.encodingUrl ? urlEncodeName(bytes) : escapeText(s);
  const el = (tag: string, value: string | number | boolean): string => `<${tag}>${value}</${tag}>`;
  const last = truncated ? entries[entries.length - 1] : undefined;
  const delimiter = req.delimiter ? el('Delimiter', encodeName(req.delimiter)) : '';
  const encodingType = req.encodingUrl ? el('EncodingType', 'url') : '';

  let root: string;
  let head: string;
  switch (req.kind) {
    case 'v1':
      root = 'ListBucketResult';
      head = el('Name', escapeText(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        el('Marker', encodeName(req.marker)) + (last ? el('NextMarker', encodeName(last.name, last.bytes)) : '') +
        el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'v2':
      root = 'ListBucketResult';
      head = el('Name', escapeText(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        (req.continuationToken ? el('ContinuationToken', escapeText(req.continuationToken)) : '') +
        (req.startAfter ? el('StartAfter', encodeName(req.startAfter)) : '') +
        (nextContinuationToken !== undefined ? el('NextContinuationToken', nextContinuationToken) : '') +
        el('KeyCount', entries.length) + el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'versions':
      root = 'ListVersionsResult';
      head = el('Name', escapeText(req.bucket)) + el('Prefix', encodeName(req.prefix)) +
        el('KeyMarker', encodeName(req.keyMarker)) + el('VersionIdMarker', escapeText(req.versionIdMarker)) +
        (last ? el('NextKeyMarker', encodeName(last.name, last.bytes)) : '') +
        (last?.id !== undefined ? el('NextVersionIdMarker', escapeText(last.id)) : '') +
        el('MaxKeys', req.maxKeys) + delimiter + encodingType;
      break;
    case 'uploads':
      root = 'ListMultipartUploadsResult';
      head = el('Bucket', escapeText(req.bucket)) + el('KeyMarker', encodeName(req.keyMarker)) +
        el('UploadIdMarker', escapeText(req.uploadIdMarker)) +
        (last ? el('NextKeyMarker', encodeName(last.name, last.bytes)) : '') +
        (last?.id !== undefined ? el('NextUploadIdMarker', escapeText(last.id)) : '') +
        delimiter + el('Prefix', encodeName(req.prefix)) + el('MaxUploads', req.maxKeys) + encodingType;
      break;
  }

  let buf = `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_XMLNS}">${head}${el('IsTruncated', truncated)}`;
  // S3 writes the entries first and the common prefixes after them.
  const withOwner = req.kind !== 'v2' || req.fetchOwner;
  for (const pass of [false, true]) {
    for (const e of entries) {
      if ((e.element === 'CommonPrefixes') !== pass) continue;
      buf += renderEntry(e, encodeName(e.name, e.bytes), withOwner);
      if (buf.length >= CHUNK) {
        yield buf;
        buf = '';
      }
    }
  }
  yield `${buf}</${root}>`;
}
