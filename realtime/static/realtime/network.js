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
