// Times as the server writes them (RFC 3339 strings) and as a page may pass them (Dates, epoch ms).

export const ms = (t) => (t == null ? null : typeof t === "number" ? t : Date.parse(t));

// A time for a query string: strings as given, Dates and epoch milliseconds as ISO 8601.
export const isoTime = (t) => (typeof t === "string" ? t : new Date(t).toISOString());
