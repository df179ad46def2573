import t from 'tap';
import { ListingCache } from '../lib/list-cache';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let at = 1_000;
  return { now: () => at, advance: (ms) => { at += ms; } };
}

t.test('a state is taken once', async (t) => {
  const cache = new ListingCache<string>(100, 1000);
  cache.put('k', 'state', 5);
  t.equal(cache.take('k'), 'state');
  t.equal(cache.take('k'), undefined);
  t.equal(cache.take('other'), undefined);
});

t.test('a state older than the time to the next page is gone', async (t) => {
  const c = clock();
  const cache = new ListingCache<string>(100, 1000, c.now);
  cache.put('old', 'a', 1);
  c.advance(600);
  cache.put('new', 'b', 1);
  c.advance(400);
  t.equal(cache.take('old'), undefined, 'expired at its time to live');
  t.equal(cache.take('new'), 'b');
  cache.put('late', 'c', 1);
  c.advance(1001);
  cache.put('x', 'd', 1);
  t.equal(cache.size, 1, 'expired states are dropped when others are put');
});

t.test('the weight bound drops the oldest listings first', async (t) => {
  const cache = new ListingCache<string>(10, 60_000);
  cache.put('a', 'a', 4);
  cache.put('b', 'b', 4);
  cache.put('c', 'c', 4);
  t.equal(cache.take('a'), undefined);
  t.equal(cache.take('b'), 'b');
  t.equal(cache.take('c'), 'c');
  cache.put('huge', 'h', 11);
  t.equal(cache.take('huge'), undefined, 'a state heavier than the bound is not kept');
  cache.put('e', 'e', 0);
  cache.put('e', 'e2', 10);
  t.equal(cache.size, 1, 'a key put again replaces its state and weight');
  t.equal(cache.take('e'), 'e2');
  for (let i = 0; i < 10; i++) cache.put(`w${i}`, 'w', 0);
  t.equal(cache.size, 10, 'an empty state weighs 1');
  cache.put('w10', 'w', 0);
  t.equal(cache.size, 10);
});
