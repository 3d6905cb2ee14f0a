// Requests (book, hold, confirm, release, cancel): over the WebSocket when it is live, else
// over HTTP; each settles exactly once.
import { TRANSPORT } from "./constants.js";
import { RealtimeError, networkError, offlineError, timeoutError } from "./errors.js";

export class Requests {
  /**
   * Book units of a slot (`quantity`: 1 unless given; confirming `holdId` books the hold's own
   * quantity). Resolves `{booking, slot}`; rejects with a RealtimeError
   * (`code` BOOKING_CONFLICT carries `slot` and `alternatives`; OFFLINE while the browser has no
   * network; NETWORK_ERROR when the server cannot be reached). Carries an idempotency key, so a
   * booking in flight when the connection drops is safely re-sent after the reconnect.
   * `whenOnline`: instead of rejecting with OFFLINE / NETWORK_ERROR / TIMEOUT, wait for the
   * network and send it again with the same key (over HTTP, the key in `Idempotency-Key`), as
   * often as needed: it books once at most; the promise stays pending meanwhile.
   */
  book(slotId, { quantity, holdId, idempotencyKey, customerId, whenOnline = false } = {}) {
    const key = idempotencyKey ?? this._uuid();
    // `quantity` only when given: the server books 1, or a confirmed hold's own quantity.
    const fields = { slot_id: String(slotId) };
    if (quantity != null) fields.quantity = quantity;
    if (holdId != null) fields.hold_id = String(holdId);
    const body = { ...fields };
    if (customerId != null) body.customer_id = String(customerId);
    const overHttp = () => this._http("POST", "/api/bookings", body, key).then((r) => this._absorb(r));
    // Every attempt of a waiting booking goes over HTTP with one body: the socket's frame and
    // the HTTP body differ (customer_id), which the server would refuse as a reused key.
    if (whenOnline && this._fetch && this.httpUrl) return this._whenOnline(overHttp);
    if (this._useHttp()) return overHttp();
    return this._request("book", { ...fields, idempotency_key: key }, { resend: true });
  }

  /**
   * Turn a hold (as `hold()` resolved it: `{id, slot_id}`) into a booking of its quantity.
   * Options as for `book`. Resolves `{booking, slot}`; HOLD_EXPIRED once it has expired.
   */
  confirm(hold, options = {}) {
    if (!hold || hold.id == null || hold.slot_id == null) throw new TypeError("confirm: pass the hold, { id, slot_id }");
    return this.book(hold.slot_id, { ...options, quantity: undefined, holdId: hold.id });
  }

  /** Hold units of a slot for `ttlSeconds`. Resolves `{hold, slot}`. */
  hold(slotId, { quantity = 1, ttlSeconds } = {}) {
    const fields = { slot_id: String(slotId), quantity };
    if (ttlSeconds != null) fields.ttl_seconds = ttlSeconds;
    if (this._useHttp()) return this._http("POST", "/api/holds", fields).then((r) => this._absorb(r));
    // Not idempotent on the server: never re-sent blindly after a lost connection.
    return this._request("hold", fields, { resend: false });
  }

  /** Give a hold back before it expires (a hold, or its id). Resolves `{slot}`; HOLD_NOT_FOUND when it is gone. */
  release(hold) {
    const id = hold && typeof hold === "object" ? hold.id : hold;
    // The socket has no release message: always HTTP.
    return this._http("DELETE", `/api/holds/${encodeURIComponent(id)}`).then((r) => this._absorb(r));
  }

  /** Cancel a booking (cancelling twice is harmless). Resolves `{booking, slot}`. `whenOnline` as for `book`. */
  cancel(bookingId, { whenOnline = false } = {}) {
    const overHttp = () => this._http("POST", `/api/bookings/${encodeURIComponent(bookingId)}/cancel`, {}).then((r) => this._absorb(r));
    if (whenOnline && this._fetch && this.httpUrl) return this._whenOnline(overHttp);
    if (this._useHttp()) return overHttp();
    return this._request("cancel", { booking_id: String(bookingId) }, { resend: true });
  }

  _request(type, fields, { resend }) {
    if (!this._wanted) this.connect();
    if (this._offline()) return Promise.reject(offlineError());
    return new Promise((resolve, reject) => {
      const id = this._nextId();
      const req = { id, type, msg: { type, id, ...fields }, resolve, reject, resend, sent: false, http: false };
      req.timer = this._setTimeout(
        () => this._fail(req, timeoutError()),
        this.options.requestTimeout,
      );
      this._pending.set(id, req);
      if (this._isOpen()) this._sendRequest(req);
    });
  }

  _sendRequest(req) {
    req.sent = this._send(req.msg);
  }

  _settle(req, ok, value) {
    if (!this._pending.has(req.id)) return;
    this._pending.delete(req.id);
    if (req.timer != null) this._clearTimeout(req.timer);
    if (ok) req.resolve(value);
    else req.reject(value instanceof RealtimeError ? value : new RealtimeError(value));
  }

  _fail(req, error) {
    this._settle(req, false, error);
  }

  _useHttp() {
    const socket = this._isOpen() && this.transport === TRANSPORT.WEBSOCKET;
    return !socket && this.options.httpFallback && !!this._fetch && !!this.httpUrl;
  }

  _absorb(result) {
    if (result?.slot) this._applyEverywhere(result.slot);
    return result;
  }
}

// One HTTP request to the server's API, and the errors it can end in: the server's own error
// object, or OFFLINE / NETWORK_ERROR / TIMEOUT in plain words (never the browser's "Failed to
// fetch", which stays on the error's `cause`).
export class Http {
  // One HTTP request; `body` undefined for a read.
  // A 401 with `getToken` (the token expired while the tab slept) fetches a fresh token and
  // sends the request once more: the server refused it before reading it, so nothing was done.
  async _http(method, path, body, idempotencyKey, retried = false) {
    if (!this._fetch || !this.httpUrl) throw new RealtimeError({ code: "NETWORK_ERROR", message: "no HTTP: pass { fetch, httpUrl }" });
    if (this._offline()) throw offlineError();
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let token = this._token;
    if (!token && this.getToken) {
      try {
        token = await this.getToken({ reason: "http" });
      } catch {
        token = null;
      }
    }
    if (token) headers.authorization = `Bearer ${token}`;
    if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
    const { res, data } = await this._fetchJson(this.httpUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401 && token && this.getToken && !retried) {
      await this._refreshToken();
      if (this._token && this._token !== token) return this._http(method, path, body, idempotencyKey, true);
    }
    if (!res.ok) {
      const err = data?.error ?? { code: `HTTP_${res.status}`, message: `The server answered with an error (HTTP ${res.status}).` };
      if (err.slot) this._applyEverywhere(err.slot);
      throw new RealtimeError({ status: res.status, ...err });
    }
    return data ?? {};
  }

  // fetch, bounded by `requestTimeout` (a request a dying network swallowed would otherwise hang).
  _fetchJson(url, init) {
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    if (init.body === undefined) delete init.body;
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = this._setTimeout(() => {
        if (done) return;
        done = true;
        abort?.abort();
        reject(timeoutError());
      }, this.options.requestTimeout);
      const finish = (fn, value) => {
        if (done) return;
        done = true;
        this._clearTimeout(timer);
        fn(value);
      };
      (async () => {
        let res;
        try {
          res = await this._fetch(url, abort ? { ...init, signal: abort.signal } : init);
        } catch (err) {
          return finish(reject, this._isBrowserOffline() ? offlineError({ sent: init.method !== "GET", cause: err }) : networkError(err));
        }
        let data = null;
        try {
          data = await res.json();
        } catch {
          data = null;
        }
        finish(resolve, { res, data });
      })();
    });
  }
}
