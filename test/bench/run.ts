import { objectThroughput } from './object-throughput';
import { listThroughput } from './list-throughput';
import { placementBench } from './placement';

// `make bench`: figures, not pass/fail.
async function main(): Promise<void> {
  await objectThroughput();
  await listThroughput();
  placementBench();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
