// One HTTP request to the server's API, and the errors it can end in: the server's own error
// object, or OFFLINE / NETWORK_ERROR / TIMEOUT in plain words (never the browser's "Failed to
// fetch", which stays on the error's `cause`).
import { RealtimeError, networkError, offlineError, timeoutError } from "./errors.js";

export class Http {
  // One HTTP request; `body` undefined for a read.
  async _http(method, path, body, idempotencyKey) {
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
