import t from 'tap';
import { parseDeleteRequest } from '../lib/delete-objects';

// <Quiet> is an XML boolean; MinIO also reads True.
t.test('Quiet is true for true, 1 and True, false otherwise', async (t) => {
  const body = (quiet: string) => `<Delete><Quiet>${quiet}</Quiet><Object><Key>k</Key></Object></Delete>`;
  for (const v of ['true', '1', 'True', ' true ']) t.equal(parseDeleteRequest(body(v)).quiet, true, JSON.stringify(v));
  for (const v of ['false', '0', 'False', 'yes', '']) t.equal(parseDeleteRequest(body(v)).quiet, false, JSON.stringify(v));
  t.equal(parseDeleteRequest('<Delete><Object><Key>k</Key></Object></Delete>').quiet, false, 'absent');
});
