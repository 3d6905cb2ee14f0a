// A minimal event emitter: the client and each channel emit their events through it.

export class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  /** Listen to `type` ("*" for everything); returns a function that stops listening. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this._handlers.get(type)?.delete(fn);
  }
  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }
  _emit(type, detail) {
    for (const key of [type, "*"]) {
      const set = this._handlers.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(key === "*" ? { type, ...detail } : detail);
        } catch (err) {
          // A listener's bug must not break the connection; surface it asynchronously.
          setTimeout(() => {
            throw err;
          }, 0);
        }
      }
    }
  }
}
