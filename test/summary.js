// Reads a tap run's output and prints the closing line CI looks for.
const text = require('node:fs').readFileSync(process.argv[2], 'utf8');
const m = [...text.matchAll(/^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?[^}]*\}$/gm)].pop();
if (!m) {
  console.log('0 passed, 1 failed');
} else {
  console.log(`${m[2] ?? 0} passed, ${m[3] ?? 0} failed`);
}
