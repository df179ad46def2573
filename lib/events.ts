import diagnostics from 'node:diagnostics_channel';

// The request path publishes what happened on these channels; metrics and
// logs subscribe. Publishing to a channel nobody listens to costs nothing.

export interface RequestStart { operation: string }
export interface RequestEnd { operation: string; status: number; seconds: number; shard: string | null }
export interface BackendResponse { shard: string; operation: string; status: number; bytesSent: number }
export interface BackendBytes { shard: string; bytes: number }
export interface BackendFailure { shard: string; kind: string }
export interface ObjectWritten { shard: string }
export interface ListPage { shard: string }
/** A write during a ring transition left an older copy of its key on `shard`. */
export interface OlderCopyLeft { shard: string; key: string; error: string }

export const channels = {
  requestStart: diagnostics.channel('tempo-s3-shard:request:start'),
  requestEnd: diagnostics.channel('tempo-s3-shard:request:end'),
  backendResponse: diagnostics.channel('tempo-s3-shard:backend:response'),
  backendBytesReceived: diagnostics.channel('tempo-s3-shard:backend:bytes-received'),
  backendFailure: diagnostics.channel('tempo-s3-shard:backend:failure'),
  objectWritten: diagnostics.channel('tempo-s3-shard:object:written'),
  listPage: diagnostics.channel('tempo-s3-shard:list:page'),
  olderCopyLeft: diagnostics.channel('tempo-s3-shard:older-copy:left'),
};
