// Versions, cursors and times: which of two states of a slot, or two positions in the event log,
// is newer; times as the server writes them and as a page may pass them.

const CURSOR = /^(\d+)@([A-Za-z0-9]+)$/;

// Order two cursors of the server's `<position>@<epoch>` form: <0, 0, >0, or null when they
// cannot be compared (another form, or another epoch: another event log).
export function compareCursors(a, b) {
  const x = CURSOR.exec(String(a));
  const y = CURSOR.exec(String(b));
  if (!x || !y || x[2] !== y[2]) return null;
  const p = x[1].replace(/^0+(?=\d)/, "");
  const q = y[1].replace(/^0+(?=\d)/, "");
  return p.length - q.length || (p < q ? -1 : p > q ? 1 : 0);
}

/** True when `incoming` is a newer version of a slot than `current` (or there is no current). */
export function isNewer(incoming, current) {
  if (!incoming) return false;
  if (!current) return true;
  return Number(incoming.version) > Number(current.version);
}

// A time in epoch milliseconds, from an RFC 3339 string (as the server writes them) or a number.
export const ms = (t) => (t == null ? null : typeof t === "number" ? t : Date.parse(t));

// A time for a query string: strings as given, Dates and epoch milliseconds as ISO 8601.
export const isoTime = (t) => (typeof t === "string" ? t : new Date(t).toISOString());
