// The fallback for pages whose WebSockets never get live (a proxy that refuses or breaks
// them): once `sseAfter` attempts in a row failed, every attempt also opens one EventSource on
// `/sse` with all the channels. The WebSocket is preferred: the stream carries the channels
// (transport "sse") only if it opens while no socket attempt is in flight, and any socket
// that gets live takes over from it. On SSE the browser's EventSource reconnects by itself
// with `Last-Event-ID`; when it gives up (the server answered an error) or its first retry
// fails, the client asks the server why (the same URL with fetch) and opens a new stream with
// `?since=` after its own backoff.
import { CLOSED, SSE_EVENTS, STATE, TRANSPORT } from "./constants.js";
import { compareCursors, isoTime, ms } from "./cursors.js";

export class SseTransport {
  _sseUsable() {
    return !!(this.options.sseFallback && this._EventSource && this.sseUrl && this._sseChannels().length);
  }

  _sseChannels() {
    return [...this.channels.values()].filter((ch) => ch.status !== "error" && ch.status !== "closed");
  }

  // Whether a stream (open or reconnecting) is what carries the channels.
  _sseCarries() {
    return this.transport === TRANSPORT.SSE && !!this._sse;
  }

  _channelsPending() {
    for (const ch of this.channels.values()) if (ch.status === "subscribed") ch.status = "pending";
  }

  _setTransport(transport) {
    if (transport === this.transport) return;
    const previous = this.transport;
    this.transport = transport;
    if (transport === TRANSPORT.SSE) {
      for (const ch of this.channels.values()) ch.presence = null; // not sent over SSE
      this._retryWsLater();
    } else {
      this._wsRetryAt = null;
    }
    this._emit("transport", { transport, previous });
  }

  // One EventSource for every channel; false when there is nothing to open.
  _openSse() {
    const channels = this._sseChannels();
    if (!channels.length || !this._EventSource || !this.sseUrl) return false;
    const url = this._sseUrlFor(channels);
    let es;
    try {
      es = new this._EventSource(url);
    } catch (err) {
      this._emit("error", { code: "CONNECT_FAILED", error: err });
      return false;
    }
    const s = {
      es, url, channels, waiting: new Set(channels), opened: false, openedAt: null, closed: false,
      retries: 0, token: this._token, key: this._sseKey(channels),
    };
    this._sse = s;
    es.onopen = () => this._onSseOpen(s);
    es.onerror = () => this._onSseError(s);
    for (const type of SSE_EVENTS) es.addEventListener(type, (ev) => this._onSseEvent(s, type, ev));
    return true;
  }

  _onSseOpen(s) {
    if (s !== this._sse || s.closed) return;
    s.opened = true;
    s.openedAt = this._now();
    s.retries = 0;
    s.waiting = new Set(s.channels.filter((ch) => ch.status !== "closed" && ch.status !== "error"));
    this._maybeLive();
  }

  _onSseEvent(s, type, ev) {
    if (s.closed || (s !== this._sse && s !== this._ssePrev)) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._emit("message", msg);
    if (type === "subscribed") {
      if (s !== this._sse) return;
      const ch = this._channel(msg.channel);
      if (ch) s.waiting.delete(ch);
      return this._onSubscribed(msg);
    }
    this._onChannelEvent(msg, this._channel(msg.channel));
    // Update ids arrive in log order: every channel of the stream has every event up to this one.
    const id = ev.lastEventId || msg.cursor;
    if (!id) return;
    for (const ch of s.channels) {
      if (ch.status !== "subscribed" || s.waiting.has(ch)) continue;
      const order = ch.cursor ? compareCursors(id, ch.cursor) : null;
      if (order != null && order > 0) ch.cursor = id;
    }
  }

  _onSseError(s) {
    if (s.closed) return;
    if (s === this._ssePrev) {
      this._closeSse(s); // the stream being replaced: its successor carries on
      this._ssePrev = null;
      return;
    }
    if (s !== this._sse) return;
    const es = s.es;
    // The browser reconnects an EventSource that had opened by itself, resuming with
    // Last-Event-ID, unless the server refused it (CLOSED) or the token on its URL is stale.
    // Its retries come at a fixed delay, without jitter: if its first retry fails too (the
    // server is down for a while), the client takes over with its own backoff, so that the
    // readers of a server that died do not all come back at the same instant.
    const stale = this._tokenStale(s.token);
    if (s.opened && es.readyState !== CLOSED && !stale && ++s.retries < 2) {
      if (this.transport === TRANSPORT.SSE) {
        this._channelsPending();
        this._setState(this._isBrowserOffline() ? STATE.OFFLINE : STATE.RECONNECTING);
      }
      return;
    }
    const carried = this.transport === TRANSPORT.SSE;
    if (s.opened && s.openedAt != null && this._now() - s.openedAt >= this.options.stableAfter) this._attempt = 0;
    this._dropSse();
    if (carried) {
      this._channelsPending();
      this._setState(this._isBrowserOffline() ? STATE.OFFLINE : STATE.RECONNECTING);
    }
    this._sseFailed(s, stale);
  }

  _closeSse(s) {
    if (!s || s.closed) return;
    s.closed = true;
    s.es.onopen = s.es.onerror = null;
    try {
      s.es.close();
    } catch {
      /* already closed */
    }
  }

  _dropSse() {
    this._closeSse(this._sse);
    this._closeSse(this._ssePrev);
    this._sse = this._ssePrev = null;
  }

  // The channels (or their windows) changed: the stream's URL must follow, once per tick.
  _queueSseSync() {
    if (this._sseSyncQueued) return;
    this._sseSyncQueued = true;
    queueMicrotask(() => {
      this._sseSyncQueued = false;
      this._syncSse();
    });
  }

  _syncSse() {
    const s = this._sse;
    if (!s || !this._wanted) return;
    const channels = this._sseChannels();
    if (channels.length && this._sseKey(channels) === s.key) return;
    if (!channels.length || !this._sseCarries() || !s.opened) {
      // Nothing left to stream (back to trying WebSockets), or a stream that carries nothing
      // yet: replace it.
      this._dropSse();
      if (!channels.length) this._setTransport(TRANSPORT.WEBSOCKET);
      else if (this._openSse()) return;
      if (!this._ws && this._reconnectTimer == null) this._open();
      return;
    }
    // Make before break: the old stream keeps delivering until the new one is live.
    this._closeSse(this._ssePrev);
    this._ssePrev = s;
    this._sse = null;
    if (!this._openSse()) {
      this._sse = s;
      this._ssePrev = null;
    }
  }
}

// The URL of the Server-Sent Events stream: one stream for every channel, one window, one cursor.
export class SseUrl {
  // `/sse?channel=...`: one window for all (the earliest `from`, the latest `to`; none if any
  // channel has none: each channel still keeps only its own window), one `since` (below).
  _sseUrlFor(channels) {
    const q = new URLSearchParams();
    for (const ch of channels) q.append("channel", ch.name);
    const { from, to } = this._sseWindow(channels);
    if (from != null) q.set("from", isoTime(from));
    if (to != null) q.set("to", isoTime(to));
    const since = this._sseSince(channels);
    if (since) q.set("since", since);
    if (this._token) q.set("token", this._token);
    return `${this.sseUrl}${this.sseUrl.includes("?") ? "&" : "?"}${q}`;
  }

  _sseWindow(channels) {
    let from = channels[0].from;
    let to = channels[0].to;
    for (const ch of channels) {
      if (from != null && (ch.from == null || ch._fromMs < ms(from))) from = ch.from;
      if (to != null && (ch.to == null || ch._toMs > ms(to))) to = ch.to;
    }
    return { from, to };
  }

  // The stream resumes every channel from one cursor: the oldest of theirs (a channel that is
  // further ahead gets a few events again, which change nothing). A channel without a cursor,
  // or cursors that cannot be compared: no `since`, a snapshot for every channel.
  _sseSince(channels) {
    let since = null;
    for (const ch of channels) {
      if (!ch.cursor) return null;
      if (since == null || ch.cursor === since) {
        since = ch.cursor;
        continue;
      }
      const order = compareCursors(ch.cursor, since);
      if (order == null) return null;
      if (order < 0) since = ch.cursor;
    }
    return since;
  }

  _sseKey(channels) {
    const { from, to } = this._sseWindow(channels);
    return JSON.stringify([channels.map((ch) => ch.name), from == null ? null : isoTime(from), to == null ? null : isoTime(to)]);
  }
}
