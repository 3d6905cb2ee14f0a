// What a page reads before (or besides) subscribing. Each resolves with the server's JSON and
// rejects with a RealtimeError carrying the HTTP `status` and the server's `code` and
// `message` (NETWORK_ERROR when the server cannot be reached).
import { isoTime } from "./cursors.js";

export class Reads {
  /**
   * Availability of one service or of all a vendor's services: `{channel, cursor, slots}`, ready
   * for `subscribe(channel, {since: cursor, from, to, slots})`. `from`/`to` (optional): ISO
   * strings, Dates or epoch milliseconds.
   */
  getAvailability({ service, vendor, from, to } = {}) {
    if ((service == null) === (vendor == null)) throw new TypeError("getAvailability: pass one of { service, vendor }");
    const path = service != null ? `/api/services/${encodeURIComponent(service)}` : `/api/vendors/${encodeURIComponent(vendor)}`;
    const query = new URLSearchParams();
    if (from != null) query.set("from", isoTime(from));
    if (to != null) query.set("to", isoTime(to));
    const qs = query.toString();
    return this._http("GET", `${path}/availability${qs ? `?${qs}` : ""}`);
  }

  /** A vendor and its services: `{id, name, services}`. */
  getVendor(id) {
    return this._http("GET", `/api/vendors/${encodeURIComponent(id)}`);
  }

  /** A service: `{id, vendor_id, name, exclusive}`. */
  getService(id) {
    return this._http("GET", `/api/services/${encodeURIComponent(id)}`);
  }

  /** One of this customer's bookings: `{booking, slot}` (404 BOOKING_NOT_FOUND for someone else's). */
  getBooking(id) {
    return this._http("GET", `/api/bookings/${encodeURIComponent(id)}`);
  }

  /**
   * Whether booking needs a token on this server, and whose token this client sends:
   * `{auth, customer_id}` (`customer_id` null without a token). Needs no token itself.
   */
  getMe() {
    return this._http("GET", "/api/me");
  }

  /** The demo vendor of a server started with `--demo`: `{vendor_id}` (404 when there is none). */
  getDemo() {
    return this._http("GET", "/api/demo");
  }
}
