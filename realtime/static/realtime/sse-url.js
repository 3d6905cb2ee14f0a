// The URL of the Server-Sent Events stream: one stream for every channel, one window, one cursor.
import { compareCursors } from "./cursors.js";
import { isoTime, ms } from "./time.js";

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
