import { setFlagsFromString } from 'node:v8';

// V8 allocates the objects of an allocation site (an object or array literal)
// straight into the old generation once it has seen nearly all of that
// site's objects survive a young-generation collection, and it does not take
// the decision back. Under warp's 4 KiB GETs it decided so in some runs for
// sites the proxy uses on every request (stream state, listener arrays,
// header maps). From then on each request's short-lived objects went to the
// old generation, which grew by about 1.4 MiB per young collection until a
// full one: peak memory 148-157 MiB against 119-129 MiB without the decision.
// A bare relay on the same Node and undici never made it. Nearly all of the
// proxy's objects live for one request; the few that live longer (listing
// state, pools) are promoted after two young collections, as without the flag.

/** Called before the request path runs: V8 reads the flag as it allocates and collects. */
export function stopPretenuring(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
