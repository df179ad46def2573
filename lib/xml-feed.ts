import type { SAXParser } from 'sax';

// sax checks a pending `<!...` declaration against CDATA and DOCTYPE once per
// character by copying all of it so far, so a `<!` followed by a long run
// without `>` costs the square of its length: 32 KB took 5 s, and an 8 MiB
// DeleteObjects body would hold a process for days. No declaration sax can
// take is longer than `[CDATA[`; text goes in in slices, and one that has
// outgrown that by the end of a slice is refused before it costs more.
const SLICE = 1024;
const LONGEST_DECLARATION = 16;

/** Writes `text` to `parser`; a declaration that outgrows every valid one
 * goes to the parser's own error handler, and is thrown. */
export function feed(parser: SAXParser, text: string): void {
  for (let at = 0; at < text.length; at += SLICE) {
    parser.write(text.slice(at, at + SLICE));
    if ((parser as unknown as { sgmlDecl: string }).sgmlDecl.length > LONGEST_DECLARATION) {
      const err = new Error('a <! declaration longer than any XML declaration');
      parser.onerror(err);
      throw err;
    }
  }
}
