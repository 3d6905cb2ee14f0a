// When a Server-Sent Events stream fails for good: ask the server why, act on its answer
// (an unknown channel, a stale cursor, a bad token), and try again.
import { TRANSPORT } from "./constants.js";
import { RealtimeError } from "./errors.js";

export class SseRecovery {
  // A stream failed for good: find out why (the server's answer to the same URL), act on it,
  // then try again, unless a WebSocket attempt in flight decides that.
  async _sseFailed(s, stale) {
    const gen = this._gen;
    let now = stale;
    if (!stale) {
      const answer = await this._probeSse(s.url);
      if (gen !== this._gen || !this._wanted) return;
      if (answer) now = await this._sseRefused(answer, s);
      if (gen !== this._gen || !this._wanted) return;
    }
    if (this._sse || (this.transport !== TRANSPORT.SSE && this._ws)) return;
    if (now) this._open();
    else if (this._reconnectTimer == null) this._scheduleReconnect();
  }

  // The status and error of `GET url` (the body of a stream is not read); null when unreachable.
  async _probeSse(url) {
    if (!this._fetch) return null;
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    try {
      const res = await this._fetch(url, { method: "GET", headers: { accept: "text/event-stream" }, cache: "no-store", signal: abort?.signal });
      let error = null;
      if (!res.ok) {
        try {
          error = (await res.json())?.error ?? null;
        } catch {
          error = null;
        }
      }
      return { status: res.status, error };
    } catch {
      return null;
    } finally {
      try {
        abort?.abort();
      } catch {
        /* ignore */
      }
    }
  }

  // Act on the server's refusal of a stream; true when the next attempt should go at once.
  async _sseRefused({ status, error }, s) {
    if (status >= 200 && status < 300) return false; // it opens now: it was transient
    const code = error?.code ?? `HTTP_${status}`;
    if (code === "UNKNOWN_CHANNEL" || (status === 422 && error?.field === "channel")) {
      // One channel that does not exist refuses the whole stream: find it, stream the others.
      if (await this._refuseUnknownChannels(s.channels)) return true;
    } else if (status === 422 && error?.field === "since") {
      for (const ch of s.channels) ch.cursor = null; // not a cursor of this server: snapshots
      return true;
    } else if (status === 401) {
      this._token = null; // fetch a fresh token for the next attempt
    }
    if (status >= 400 && status < 500 && status !== 429) {
      this._emit("error", { code, error: new RealtimeError({ status, ...(error ?? { code, message: `HTTP ${status}` }) }) });
    }
    return false;
  }

  // Which channels do not exist (their HTTP reads answer 404): each is refused as over the
  // WebSocket (status "error", `ready` rejects with UNKNOWN_CHANNEL). True when one was.
  async _refuseUnknownChannels(channels) {
    const refused = await Promise.all(
      channels.map(async (ch) => {
        const at = ch.name.indexOf(":");
        const kind = ch.name.slice(0, at).toLowerCase();
        const id = encodeURIComponent(ch.name.slice(at + 1));
        const path = kind === "service" ? `/api/services/${id}` : kind === "vendor" ? `/api/vendors/${id}` : null;
        if (path) {
          try {
            await this._http("GET", path);
            return false;
          } catch (err) {
            if (err?.status !== 404) return false;
          }
        }
        this._refuseChannel(ch, { code: "UNKNOWN_CHANNEL", message: `no such channel ${ch.name}`, field: "channel" });
        return true;
      }),
    );
    return refused.some(Boolean);
  }

  _refuseChannel(ch, error) {
    if (ch.status === "closed" || ch.status === "error") return;
    ch.status = "error";
    ch.error = new RealtimeError(error);
    ch._rejectReady(ch.error);
    this._emit("error", { code: error.code, error: ch.error, channel: ch.name });
  }
}
