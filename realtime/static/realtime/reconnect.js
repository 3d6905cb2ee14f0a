// Reconnecting: when the next attempt goes (exponential backoff with full jitter), and checking
// the connection at once when the page says something changed (`resync`).
import { backoffDelay } from "./backoff.js";
import { CONNECTING, OPEN, STATE, TRANSPORT } from "./constants.js";

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

// Liveness is judged on the wall clock (`now()`), never by counting timer ticks: a background
// tab's timers may fire a minute late, and a frozen tab's not at all. A ping is due when
// nothing arrived for `heartbeatInterval`; the socket is dead when a ping stays unanswered for
// `pongTimeout` *while this page was awake to hear the answer*. When a tick comes late (the
// tab was throttled or frozen), the pong may be queued behind it, so the verdict waits for one
// more short check. Becoming visible or online checks at once.
export class Heartbeat {
  _tickInterval() {
    const o = this.options;
    return Math.max(250, Math.min(o.heartbeatInterval, o.pongTimeout, o.connectTimeout) / 2);
  }

  _startTicking(delay) {
    if (this._tickTimer != null) this._clearTimeout(this._tickTimer);
    this._lastTickAt = this._now();
    this._tickTimer = this._setTimeout(() => this._tick(), delay ?? this._tickInterval());
  }

  _tick() {
    this._tickTimer = null;
    if (!this._wanted) return;
    const now = this._now();
    const interval = this._tickInterval();
    const late = this._lastTickAt != null && now - this._lastTickAt > interval * 2 + 1000;
    this._lastTickAt = now;
    let next = interval;
    const ws = this._ws;
    if (ws && ws.readyState === CONNECTING) {
      if (now - this._createdAt >= this.options.connectTimeout) {
        if (late) this._createdAt = now; // we were asleep: give it one more window
        else this._drop(4000, "connect timeout");
      }
    } else if (ws && this._isOpen()) {
      const p = this._ping;
      if (p && this._lastRecvAt >= p.sentAt) this._ping = null;
      if (this._ping) {
        if (now - this._ping.sentAt >= this.options.pongTimeout) {
          if (late && !this._ping.grace) {
            this._ping.grace = true; // let queued frames arrive before judging
            next = Math.min(interval, 500);
          } else {
            this._drop(4000, "heartbeat timeout");
          }
        }
      } else if (now - this._lastRecvAt >= this.options.heartbeatInterval || late) {
        this._sendPing(false);
      }
      if (this._refreshAt != null && now >= this._refreshAt) this._refreshToken();
    } else if (ws && ws.readyState >= 2 && now - (this._openedAt ?? this._createdAt) >= interval) {
      this._drop(4000, "closed without a close event"); // never wait on a lost close event
    } else if (!ws && this._nextRetryAt != null && now >= this._nextRetryAt + interval) {
      this._open(); // the retry timer was lost or starved
    }
    if (this._sseCarries()) {
      if (!ws && this._wsRetryAt != null && now >= this._wsRetryAt) {
        this._wsRetryAt = null;
        this._probeWs();
      }
      if (!this._isOpen() && this._refreshAt != null && now >= this._refreshAt) this._refreshToken();
    }
    if (this._wanted && this._tickTimer == null) {
      this._tickTimer = this._setTimeout(() => this._tick(), next);
    }
  }

  _sendPing(awake) {
    if (this._ping && !awake) return;
    const id = this._nextId();
    this._ping = { id, sentAt: this._now(), grace: awake };
    this._send({ type: "ping", id });
  }
}
