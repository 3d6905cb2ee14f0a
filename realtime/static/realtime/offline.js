// The browser's own word on the network. When it says it went offline (its `offline` event, or
// `navigator.onLine`), the client does not wait for a ping to time out: the state is `offline`
// at once, the socket and stream are dropped, requests reject with code OFFLINE, and on
// `online` it comes back through `reconnecting` to `live`. Requests opted in with `whenOnline`
// wait instead, and go out again when the network is back.
import { backoffDelay } from "./backoff.js";
import { RealtimeError, offlineError } from "./errors.js";

// What a `whenOnline` request retries on: the request may not have reached the server, and
// sending it again with the same idempotency key cannot do it twice.
const RETRIED = new Set(["OFFLINE", "NETWORK_ERROR", "TIMEOUT"]);

export class Offline {
  _isBrowserOffline() {
    if (this._navigator && typeof this._navigator.onLine === "boolean") return this._navigator.onLine === false;
    return this._offlineEvent;
  }

  // Whether a request would find no way out: no network, and no socket that still answers.
  _offline() {
    return this._isBrowserOffline() && !this._isOpen();
  }

  _wentOffline() {
    this._offlineEvent = true;
    if (!this._wanted) return;
    for (const req of [...this._pending.values()]) this._fail(req, offlineError({ sent: req.sent }));
    this._discard(4000, "offline");
    this._dropSse();
    this._wsLive = false;
    this._openedAt = null;
    this._channelsPending();
    this._subAcks.clear();
    this._scheduleReconnect(null, { slow: true }); // `offline` now; a rare probe until `online`
    this._emit("disconnected", { code: 4000, reason: "offline" });
  }

  _cameOnline() {
    this._offlineEvent = false;
    this._wakeWaiters();
    this.resync("online");
  }

  // Run `attempt` until it settles with anything but a network failure, waiting for the
  // network between tries. close() rejects it with CLIENT_CLOSED.
  async _whenOnline(attempt) {
    if (!this._wanted && this.url && this._WebSocket) this.connect(); // to hear `online`
    const gen = this._gen; // close() bumps it
    for (let tries = 0; ; tries++) {
      if (this._offline()) {
        this._emit("waiting", { code: "OFFLINE", error: offlineError() });
        await this._networkBack(tries);
      }
      try {
        return await attempt();
      } catch (err) {
        if (!RETRIED.has(err?.code) || gen !== this._gen) throw err;
        this._emit("waiting", { code: err.code, error: err });
      }
      await this._networkBack(tries);
    }
  }

  // Resolves when the network may be back: `online`, the client live again, or a backoff delay
  // (the maximum while the browser says it is offline).
  _networkBack(tries) {
    return new Promise((resolve, reject) => {
      const o = this.options;
      const delay = this._isBrowserOffline()
        ? o.maxDelay
        : Math.max(o.baseDelay, backoffDelay(tries, { baseDelay: o.baseDelay, maxDelay: o.maxDelay, random: this._random }));
      const w = { resolve, reject, timer: null };
      w.timer = this._setTimeout(() => this._wakeWaiters(w), delay);
      this._waiters.add(w);
    });
  }

  // Wake one waiter (its timer fired), or all of them (the network is back).
  _wakeWaiters(only) {
    for (const w of only ? [only] : [...this._waiters]) {
      if (!this._waiters.delete(w)) continue;
      this._clearTimeout(w.timer);
      w.resolve();
    }
  }

  _rejectWaiters() {
    for (const w of [...this._waiters]) {
      this._waiters.delete(w);
      this._clearTimeout(w.timer);
      w.reject(closedError());
    }
  }
}

function closedError() {
  return new RealtimeError({ code: "CLIENT_CLOSED", message: "the client was closed" });
}

// The page around the client: visibility, back/forward cache, and the network going away and
// coming back.
export class PageLifecycle {
  _installListeners() {
    this._removeListeners();
    const add = (target, type, fn) => {
      if (!target || typeof target.addEventListener !== "function") return;
      target.addEventListener(type, fn);
      this._listeners.push(() => target.removeEventListener(type, fn));
    };
    add(this._document, "visibilitychange", () => {
      if (this._document.visibilityState !== "hidden") this.resync("visible");
    });
    add(this._document, "resume", () => this.resync("resume"));
    add(this._window, "pageshow", (ev) => {
      if (ev && ev.persisted) this.resync("pageshow");
    });
    // The browser knows at once when its network goes (offline.js); a ping would take seconds.
    add(this._window, "online", () => this._cameOnline());
    add(this._window, "offline", () => this._wentOffline());
  }

  _removeListeners() {
    for (const off of this._listeners.splice(0)) off();
  }
}
