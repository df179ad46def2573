// Reads tap runs' output and prints the closing line CI looks for, summed
// over every log given (a run that left no summary counts as one failure).
const { readFileSync, existsSync } = require('node:fs');
let passed = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const m = [...text.matchAll(/^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?[^}]*\}$/gm)].pop();
  if (!m) {
    failed += 1;
    continue;
  }
  passed += Number(m[2] ?? 0);
  failed += Number(m[3] ?? 0);
}
console.log(`${passed} passed, ${failed} failed`);
