// One subscribed channel and its local state.
import { isNewer, ms } from "./cursors.js";
import { Emitter } from "./emitter.js";

/**
 * One subscribed channel (`vendor:ID` or `service:ID`) and its local state: slots by id, each
 * replaced only by a newer version. Emits the same events as the client, for this channel only.
 */
export class Channel extends Emitter {
  constructor(client, name, opts = {}) {
    super();
    this.client = client;
    this.name = name;
    this.cursor = opts.since ?? null;
    this.from = opts.from ?? null;
    this.to = opts.to ?? null;
    this.slots = new Map();
    this.presence = null;
    this.status = "pending"; // pending | subscribed | error | closed
    this.error = null;
    this._fromMs = ms(this.from);
    this._toMs = ms(this.to);
    for (const slot of opts.slots ?? []) this._apply(slot);
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // awaiting it is optional
  }

  /** The slot with this id, or undefined. */
  get(id) {
    return this.slots.get(String(id));
  }

  /** Every slot, ordered by start time. */
  list() {
    return [...this.slots.values()].sort(
      (a, b) => ms(a.starts_at) - ms(b.starts_at) || ms(a.ends_at) - ms(b.ends_at) || String(a.id).localeCompare(String(b.id)),
    );
  }

  /** Whether a slot falls inside the window this channel was subscribed with. */
  inWindow(slot) {
    if (!slot) return false;
    const start = ms(slot.starts_at);
    const end = ms(slot.ends_at ?? slot.starts_at);
    if (this._toMs != null && !(start < this._toMs)) return false;
    if (this._fromMs != null && !(end > this._fromMs)) return false;
    return true;
  }

  unsubscribe() {
    return this.client.unsubscribe(this.name);
  }

  // Apply a slot if it is newer; returns true when the local state changed.
  _apply(slot) {
    if (!slot || slot.id == null || !this.inWindow(slot)) return false;
    const id = String(slot.id);
    if (!isNewer(slot, this.slots.get(id))) return false;
    this.slots.set(id, slot);
    return true;
  }

  _replace(slots) {
    this.slots.clear();
    for (const slot of slots ?? []) this._apply(slot);
  }
}
