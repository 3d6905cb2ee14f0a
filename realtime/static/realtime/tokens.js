// Tokens: when a JWT expires, and fetching a fresh one (with `getToken`) before it does.

/** The `exp` claim of a JWT in milliseconds, or null when it has none or is not a JWT. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length < 2) return null;
  try {
    let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const json = typeof atob === "function" ? atob(b64) : globalThis.Buffer.from(b64, "base64").toString("binary");
    const claims = JSON.parse(json);
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

export class TokenRefresh {
  // Ask `getToken` for the token of a new connection; false when it failed (or was abandoned).
  async _connectToken(gen) {
    if (!this.getToken) return true;
    try {
      const token = await this.getToken({ reason: "connect" });
      if (gen !== this._gen || !this._wanted) return false;
      this._setToken(token);
      return true;
    } catch (err) {
      if (gen === this._gen && this._wanted) this._emit("error", { code: "TOKEN_FAILED", error: err });
      return false;
    }
  }

  // --- tokens ------------------------------------------------------------------------------------

  _setToken(token) {
    this._token = token || null;
    const exp = tokenExpiry(this._token);
    if (exp == null) {
      this._refreshAt = this.options.tokenRefreshInterval ? this._now() + this.options.tokenRefreshInterval : null;
      return;
    }
    const lifetime = exp - this._now();
    const margin = Math.min(this.options.refreshMargin, Math.max(0, lifetime / 2));
    this._refreshAt = exp - margin;
  }

  // Fetch a fresh token and hand it to the open socket with `auth`; one refresh at a time.
  _refreshToken() {
    if (!this.getToken) return Promise.resolve();
    if (this._refreshing) return this._refreshing;
    this._refreshAt = null;
    this._refreshing = (async () => {
      try {
        const token = await this.getToken({ reason: "refresh" });
        this._setToken(token);
        if (this._token) this._send({ type: "auth", id: this._nextId(), token: this._token });
      } catch (err) {
        this._emit("error", { code: "TOKEN_FAILED", error: err });
        this._refreshAt = this._now() + Math.min(30000, this.options.refreshMargin / 2);
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }

  // Whether the token on a stream's URL should no longer be used: a newer one was fetched
  // since, or it has expired.
  _tokenStale(token) {
    if (!this.getToken || !token) return false;
    if (token !== this._token) return true;
    const exp = tokenExpiry(token);
    return exp != null && exp <= this._now();
  }
}
