// The WebSocket transport: opening a socket, subscribing every channel on it, and what happens
// when it closes (re-sending what may be re-sent, scheduling the next attempt).
import { OPEN, STATE, TRANSPORT } from "./constants.js";

export class WebSocketTransport {
  // The next attempt: on the WebSocket transport a socket (and, once `sseAfter` attempts in a
  // row failed, a stream beside it); on SSE a stream.
  async _open() {
    this._clearReconnect();
    if (!this._wanted) return;
    // With no channel there is nothing to stream: SSE is for channels only.
    if (this.transport === TRANSPORT.SSE && !this._sseChannels().length) this._setTransport(TRANSPORT.WEBSOCKET);
    const sse = this.transport === TRANSPORT.SSE;
    if (sse ? this._sse : this._ws) return;
    const gen = this._gen;
    // While the browser says it is offline an attempt is only a rare probe: the page keeps
    // showing `offline` rather than flickering to `reconnecting` every `maxDelay`.
    if (this.state !== STATE.RECONNECTING && !this._isBrowserOffline()) this._setState(STATE.RECONNECTING);
    if (this.getToken) {
      // (Without getToken the attempt starts synchronously.)
      if (!(await this._connectToken(gen))) {
        if (gen === this._gen && this._wanted) this._scheduleReconnect();
        return;
      }
      if (gen !== this._gen || !this._wanted || (sse ? this._sse : this._ws)) return;
    }
    if (sse) {
      if (!this._openSse()) this._scheduleReconnect();
      return;
    }
    const opened = this._openWs();
    if (!this._sse && this._wsFailures >= this.options.sseAfter && this._sseUsable()) this._openSse();
    if (!opened && !this._sse) this._scheduleReconnect();
  }

  _openWs() {
    let url = this.url;
    if (this._token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this._token);
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (err) {
      this._emit("error", { code: "CONNECT_FAILED", error: err });
      this._wsFailures++;
      return false;
    }
    this._ws = ws;
    this._wsLive = false;
    this._createdAt = this._now();
    this._openedAt = null;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev?.code, ev?.reason);
    ws.onerror = () => {}; // a close event always follows
    return true;
  }

  // On SSE, every `wsRetryInterval`: try a WebSocket beside the stream; it takes over once live.
  async _probeWs() {
    if (!this._wanted || this._ws) return;
    const gen = this._gen;
    const ok = !this.getToken || (await this._connectToken(gen));
    if (gen !== this._gen || !this._wanted || this._ws || this.transport !== TRANSPORT.SSE) return;
    if (!ok || !this._openWs()) this._retryWsLater();
  }

  _retryWsLater() {
    const every = this.options.wsRetryInterval;
    this._wsRetryAt = this.transport === TRANSPORT.SSE && every > 0 ? this._now() + every : null;
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    const now = this._now();
    this._openedAt = now;
    this._lastRecvAt = now;
    this._ping = null;
    this._subAcks.clear();
    const carried = this._sseCarries(); // the stream keeps the channels until this socket is live
    for (const ch of this.channels.values()) {
      if (ch.status === "error" || ch.status === "closed") continue;
      if (!carried) ch.status = "pending";
      this._sendSubscribe(ch);
    }
    for (const req of this._pending.values()) if (!req.sent && !req.http) this._sendRequest(req);
    this._maybeLive();
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._detach();
    this._connectionLost(code, reason);
  }

  // Forget the socket (without waiting for a close handshake a dead network never finishes).
  _detach() {
    const ws = this._ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    this._ping = null;
  }

  _drop(code, reason) {
    this._discard(code, reason);
    this._connectionLost(code, reason);
  }

  // Forget the socket and close it, with no other consequence.
  _discard(code, reason) {
    const ws = this._ws;
    this._detach();
    if (!ws) return;
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  _connectionLost(code, reason) {
    if (!this._wsLive) this._wsFailures++; // it never got live: what a broken proxy looks like
    this._wsLive = false;
    const carried = this._sseCarries();
    if (!carried) this._channelsPending();
    this._subAcks.clear();
    for (const req of [...this._pending.values()]) {
      if (req.http || !req.sent) continue;
      if (req.resend) req.sent = false; // re-sent on the next connection
      else this._fail(req, { code: "CONNECTION_LOST", message: "the connection was lost before the server answered" });
    }
    if (this._openedAt != null && this._now() - this._openedAt >= this.options.stableAfter) this._attempt = 0;
    this._openedAt = null;
    if (carried) {
      this._retryWsLater(); // stay on the stream; try a WebSocket again later
      return;
    }
    this._emit("disconnected", { code, reason });
    // A stream tried beside this socket decides what comes next: it carries the channels if
    // it opens, and schedules the next attempt if it fails.
    if (this._sse) return this._maybeLive();
    if (this._wanted) this._scheduleReconnect(code);
  }

  _isOpen() {
    return !!this._ws && this._ws.readyState === OPEN && this._openedAt != null;
  }

  _maybeLive() {
    if (this._isOpen() && this._subAcks.size === 0) {
      // Live on the WebSocket: it is preferred, so any stream goes.
      this._wsLive = true;
      this._wsFailures = 0;
      this._dropSse();
      this._setTransport(TRANSPORT.WEBSOCKET);
      this._setState(STATE.LIVE);
      return;
    }
    const s = this._sse;
    if (!s || !s.opened || s.es.readyState !== OPEN) return;
    if (this.transport !== TRANSPORT.SSE) {
      if (this._ws) return; // a WebSocket attempt is still in flight: it is preferred
      this._setTransport(TRANSPORT.SSE);
    }
    for (const ch of s.waiting) if (ch.status === "closed" || ch.status === "error") s.waiting.delete(ch);
    if (s.waiting.size) return;
    if (this._ssePrev) this._closeSse(this._ssePrev); // the stream it replaced
    this._ssePrev = null;
    this._setState(STATE.LIVE);
  }

  _send(obj) {
    if (!this._isOpen()) return false;
    try {
      this._ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  _sendSubscribe(ch) {
    const id = this._nextId();
    const msg = { type: "subscribe", id, channel: ch.name };
    if (ch.cursor) msg.since = ch.cursor;
    if (ch.from) msg.from = ch.from;
    if (ch.to) msg.to = ch.to;
    this._subAcks.set(id, ch);
    this._send(msg);
  }
}
