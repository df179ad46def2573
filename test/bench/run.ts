import { objectThroughput } from './object-throughput';
import { listThroughput } from './list-throughput';

// `make bench`: figures, not pass/fail.
async function main(): Promise<void> {
  await objectThroughput();
  await listThroughput();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
