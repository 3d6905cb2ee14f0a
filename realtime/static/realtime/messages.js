// Frames from the server (over the WebSocket or the stream): subscriptions, slot updates,
// conflicts, presence, and the results of requests.
import { backoffDelay } from "./backoff.js";
import { compareCursors } from "./cursors.js";
import { RealtimeError } from "./errors.js";

export class Messages {
  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    this._lastRecvAt = this._now();
    if (this._ping && this._lastRecvAt >= this._ping.sentAt) this._ping = null;
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._emit("message", msg);
    switch (msg.type) {
      case "subscribed":
        return this._onSubscribed(msg);
      case "availability:updated":
      case "conflict:detected":
        return this._onChannelEvent(msg, this._channel(msg.channel));
      case "presence": {
        const ch = this._channel(msg.channel);
        if (!ch) return;
        ch.presence = msg.count;
        const d = { channel: ch.name, count: msg.count };
        ch._emit("presence", d);
        return this._emit("presence", d);
      }
      case "result":
        return this._onResult(msg);
      case "unsubscribed":
      case "pong": {
        const req = this._pending.get(msg.id);
        if (req) this._settle(req, true, msg);
        return;
      }
      case "error":
        return this._onError(msg);
      default:
        return;
    }
  }

  _onSubscribed(msg) {
    let ch = msg.id != null ? this._subAcks.get(msg.id) : null;
    if (msg.id != null) this._subAcks.delete(msg.id);
    ch = ch ?? this._channel(msg.channel);
    if (!ch || ch.status === "closed") return this._maybeLive();
    if (msg.channel && msg.channel !== ch.name) this._aliases.set(msg.channel, ch);
    const resumed = !msg.snapshot && Array.isArray(msg.events);
    if (msg.snapshot) {
      ch._replace(msg.snapshot.slots);
      ch.cursor = msg.cursor ?? ch.cursor;
      const d = { channel: ch.name, slots: ch.list(), cursor: ch.cursor };
      ch._emit("snapshot", d);
      this._emit("snapshot", d);
    } else if (Array.isArray(msg.events)) {
      for (const ev of msg.events) this._onChannelEvent(ev, ch, true);
      ch.cursor = msg.cursor ?? ch.cursor;
    } else if (msg.cursor) {
      ch.cursor = msg.cursor;
    }
    ch.status = "subscribed";
    const d = { channel: ch.name, cursor: ch.cursor, resumed, missed: resumed ? msg.events.length : null };
    ch._resolveReady(d);
    ch._emit("subscribed", d);
    this._emit("subscribed", d);
    this._maybeLive();
  }

  _onChannelEvent(msg, ch, replay = false) {
    if (!ch || ch.status === "closed" || !msg) return;
    // An event at or before the channel's cursor was had already (a stream resumed from an
    // older cursor of another channel replays it): its slot changes nothing, and a conflict is
    // not reported twice. A cursor never moves back.
    const order = msg.cursor && ch.cursor ? compareCursors(msg.cursor, ch.cursor) : null;
    const seen = order != null && order <= 0;
    if (msg.cursor && !seen) ch.cursor = msg.cursor;
    const isConflict = msg.type === "conflict:detected" || (msg.type == null && "alternatives" in msg && !("reason" in msg));
    const changed = ch._apply(msg.slot);
    if (isConflict) {
      if (seen) return;
      const d = {
        channel: ch.name,
        slot: ch.get(msg.slot?.id) ?? msg.slot,
        quantity: msg.quantity,
        alternatives: msg.alternatives ?? [],
        cursor: msg.cursor,
        replay,
        changed,
      };
      ch._emit("conflict:detected", d);
      this._emit("conflict:detected", d);
      return;
    }
    if (!changed) return; // an older or equal version: the local state is already newer
    const d = { channel: ch.name, slot: msg.slot, reason: msg.reason, cursor: msg.cursor, replay };
    ch._emit("availability:updated", d);
    this._emit("availability:updated", d);
  }

  _onResult(msg) {
    const req = this._pending.get(msg.id);
    if (msg.slot) this._applyEverywhere(msg.slot);
    if (msg.ok === false && msg.error?.slot) this._applyEverywhere(msg.error.slot);
    if (!req) return;
    if (msg.ok === false && msg.error?.code === "UNAUTHORIZED" && this.getToken && !req.authRetried) {
      // The token expired under us (a tab asleep past its refresh): refresh, then try once more.
      req.authRetried = true;
      req.sent = false;
      this._refreshToken().then(() => {
        if (this._pending.has(req.id) && this._isOpen() && !req.sent) this._sendRequest(req);
      });
      return;
    }
    if (msg.ok === false) this._settle(req, false, msg.error ?? { code: "ERROR", message: "request failed" });
    else {
      const { type, id, ...rest } = msg;
      this._settle(req, true, rest);
    }
  }

  _onError(msg) {
    const err = msg.error ?? { code: "ERROR", message: "error" };
    if (msg.id != null && this._subAcks.has(msg.id)) {
      const ch = this._subAcks.get(msg.id);
      this._subAcks.delete(msg.id);
      if (err.code === "UNKNOWN_CHANNEL" || err.code === "TOO_MANY_SUBSCRIPTIONS") {
        ch.status = "error";
        ch.error = new RealtimeError(err);
        ch._rejectReady(ch.error);
      } else if (this._isOpen()) {
        // RATE_LIMITED or a transient refusal: try this channel again shortly.
        this._setTimeout(() => {
          if (ch.status === "pending" && this._isOpen() && this.channels.get(ch.name) === ch) this._sendSubscribe(ch);
        }, backoffDelay(2, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random }) + 100);
      }
      this._emit("error", { code: err.code, error: new RealtimeError(err), channel: ch.name });
      this._maybeLive();
      return;
    }
    const req = msg.id != null ? this._pending.get(msg.id) : null;
    if (req) this._settle(req, false, err);
    if (err.code === "UNAUTHORIZED" && this.getToken) this._refreshToken();
    if (!req) this._emit("error", { code: err.code, error: new RealtimeError(err) });
  }

  _applyEverywhere(slot) {
    for (const ch of this.channels.values()) {
      if (ch.status === "closed") continue;
      const related =
        ch.slots.has(String(slot.id)) ||
        ch.name === `service:${slot.service_id}` ||
        ch.name === `vendor:${slot.vendor_id}`;
      if (related && ch._apply(slot)) {
        const d = { channel: ch.name, slot, reason: "result", cursor: ch.cursor, replay: false };
        ch._emit("availability:updated", d);
        this._emit("availability:updated", d);
      }
    }
  }

  _channel(name) {
    if (name == null) return undefined;
    const ch = this.channels.get(name) ?? this._aliases.get(name);
    if (ch) return ch;
    const lower = String(name).toLowerCase();
    for (const c of this.channels.values()) if (c.name.toLowerCase() === lower) return c;
    return undefined;
  }
}
