/**
 * Quotes a word for a POSIX shell when it needs it, so a command p2prc prints (ssh, hints, resume) works
 * when pasted: plain words stay as they are, anything else goes in single quotes.
 */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
