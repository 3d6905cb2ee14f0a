// The one kind of error every promise of the client rejects with.

/** An error the server (or the client) reported: carries every field of the contract's error object. */
export class RealtimeError extends Error {
  constructor(error) {
    const e = error && typeof error === "object" ? error : { code: "ERROR", message: String(error) };
    super(e.message || e.code || "error");
    this.name = "RealtimeError";
    Object.assign(this, e); // code, message, slot, alternatives, field, ...
    this.error = e;
  }
}

// The messages a person may be shown as they are: plain words, never a browser's or a library's
// own text (which stays on `cause` for developers).
const OFFLINE = "You are offline, so this was not sent. Try again when you are back online.";
const OFFLINE_IN_FLIGHT = "You went offline before the server answered, so it may or may not have gone through.";
const NETWORK = "The server could not be reached. Check your connection and try again.";
const TIMEOUT = "The server did not answer in time.";

/** Code OFFLINE: the browser has no network. `sent`: the request had gone out (outcome unknown). */
export function offlineError({ sent = false, cause } = {}) {
  const fields = sent ? { outcome: "unknown" } : {};
  return withCause(new RealtimeError({ code: "OFFLINE", message: sent ? OFFLINE_IN_FLIGHT : OFFLINE, ...fields }), cause);
}

/** Code NETWORK_ERROR: online, but the request did not reach the server (or its answer did not come back). */
export function networkError(cause) {
  return withCause(new RealtimeError({ code: "NETWORK_ERROR", message: NETWORK }), cause);
}

/** Code TIMEOUT: no answer within `requestTimeout`. */
export function timeoutError() {
  return new RealtimeError({ code: "TIMEOUT", message: TIMEOUT });
}

function withCause(err, cause) {
  if (cause !== undefined) Object.defineProperty(err, "cause", { value: cause, configurable: true, writable: true });
  return err;
}
