// Reconnecting: when the next attempt goes (exponential backoff with full jitter), and checking
// the connection at once when the page says something changed (`resync`).
import { backoffDelay } from "./backoff.js";
import { OPEN, STATE, TRANSPORT } from "./constants.js";

export class Reconnect {
  /** Check the connection now (what a visible tab or a network change does by itself). */
  resync(reason = "manual") {
    if (!this._wanted) return;
    if (this.transport === TRANSPORT.SSE) {
      // No ping reaches the page over SSE: a stream that may have died (the network came back,
      // the page was frozen) is reopened, resuming from the cursors. A visible tab keeps an
      // open stream.
      if (this._sse && reason === "visible" && this._sse.es.readyState === OPEN) {
        this._emit("resync", { reason });
        return;
      }
      this._dropSse();
      this._channelsPending();
    }
    if (this.transport === TRANSPORT.WEBSOCKET && this._ws && this._ws.readyState === OPEN) {
      this._sendPing(true);
      this._startTicking();
    } else if (!this._ws || this.transport === TRANSPORT.SSE) {
      // Come back soon, still with a little jitter so that tabs do not come back together.
      this._clearReconnect();
      this._attempt = 0;
      if (this._isBrowserOffline()) {
        this._setState(STATE.OFFLINE);
        this._scheduleReconnect(null, { slow: true });
      } else {
        this._setState(STATE.RECONNECTING);
        const delay = backoffDelay(0, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random });
        this._reconnectTimer = this._setTimeout(() => this._open(), delay);
        this._nextRetryAt = this._now() + delay;
      }
    }
    this._emit("resync", { reason });
  }

  _scheduleReconnect(code, { slow = false } = {}) {
    if (!this._wanted) return;
    this._clearReconnect();
    let delay;
    if (slow || this._isBrowserOffline()) {
      // The browser says it has no network: wait for its `online` event, probing rarely.
      this._setState(STATE.OFFLINE);
      delay = this.options.maxDelay;
    } else {
      this._setState(STATE.RECONNECTING);
      let attempt = this._attempt++;
      if (code === 1013) attempt = Math.max(attempt, 4); // overloaded: back off harder
      if (code === 1008) this._token = null; // bad token: fetch a fresh one
      delay = backoffDelay(attempt, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random });
    }
    this._nextRetryAt = this._now() + delay;
    this._reconnectTimer = this._setTimeout(() => this._open(), delay);
  }

  _clearReconnect() {
    if (this._reconnectTimer != null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._nextRetryAt = null;
  }
}
