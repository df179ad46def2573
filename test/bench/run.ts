import { objectThroughput } from './object-throughput';

// `make bench`: figures, not pass/fail.
async function main(): Promise<void> {
  await objectThroughput();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
