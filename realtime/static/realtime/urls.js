// Where the server is: by default the one this module was loaded from.

export function defaultUrl() {
  // The server this module was loaded from; else the page's own origin.
  let base = null;
  try {
    base = new URL(import.meta.url);
  } catch {
    /* not a URL */
  }
  if (!base || !/^https?:$/.test(base.protocol)) {
    if (typeof location !== "undefined" && /^https?:$/.test(location.protocol)) base = new URL(location.href);
    else return null;
  }
  return `${base.protocol === "https:" ? "wss:" : "ws:"}//${base.host}/ws`;
}

export function httpFromWs(url) {
  try {
    const u = new URL(url);
    u.protocol = u.protocol === "wss:" ? "https:" : "http:";
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}
