// The booking widget: the custom element <realtime-booking>, which the demo page at GET / uses
// too. Plain DOM, no framework, no build step: one cell per slot, updated in place when the slot
// changes. Everything it asks the server goes through the client library (realtime.js); giving a
// hold back goes through the library's release() where it has one, else DELETE /api/holds/ID.
//
//   <script type="module" src="https://booking.example.com/static/widget.js"></script>
//   <realtime-booking service="SERVICE_ID"></realtime-booking>
//
// Attributes: service="ID" or vendor="ID"; server="https://host" (default: where this file was
// loaded from); checkout="hold" (a click holds, then Confirm books); date="YYYY-MM-DD" (the
// first week shown; default today); hold-ttl="SECONDS" (default the server's, 300);
// query-params (read service, vendor, date, checkout and hold_ttl from the page's URL: the demo
// page); token="JWT" and signin-url="URL" for signed-in sites, which can instead give the
// element a `getToken` function (docs/widget.md). Everything is inside an open shadow root, so
// the host page's styles do not reach in and the widget's do not leak out.
import { RealtimeClient, tokenExpiry } from "./realtime.js";

const DAY = 24 * 3600 * 1000;
const HOUR = 3600 * 1000;
const SEARCH_CHUNK_DAYS = 56; // how far one availability read looks ahead for a free slot
const SEARCH_LIMIT_DAYS = 371; // and how far in total: a year and a week
const STYLE_URL = new URL("./widget.css", import.meta.url).href;
const fmtDay = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });
const fmtDayLong = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
// Only these three: making a formatter costs about as much as drawing fifty slots.
const fmtTime = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
// Errors whose text comes from the browser or the library ("Failed to fetch"), never shown.
const NETWORK_CODES = new Set(["OFFLINE", "NETWORK_ERROR", "TIMEOUT", "CLIENT_CLOSED", "CONNECT_FAILED"]);
const OFFLINE_TEXT = "You are offline: nothing was booked";
const HOLD_GRACE = 4000; // ms an expired hold waits for the server's word before it is let go
const KEPT_MAX = 50; // bookings remembered per server and customer (the newest), to show after a reload
const SIGNIN_TEXT = {
  none: ["Sign in to book.", "You can see every time, and it updates live; booking one needs you to be signed in."],
  expired: ["Your sign-in has expired.", "Sign in again to book; the times shown still update live."],
};

const TEMPLATE = `
<link rel="stylesheet" href="${STYLE_URL}">
<div class="rt-widget" id="rt-app" aria-busy="true">
  <a class="rt-skip" href="#rt-days" id="rt-skip">Skip to the times</a>
  <header class="rt-head">
    <div class="rt-titles">
      <p class="rt-eyebrow" id="rt-vendor">Loading…</p>
      <h2 class="rt-title" id="rt-title">Book a time</h2>
    </div>
    <div class="rt-status">
      <span class="rt-conn" data-connection="offline" title="Connection to live availability"><span class="rt-dot" aria-hidden="true"></span><span class="rt-conn-text">offline</span></span>
      <p class="rt-presence rt-unknown" title="People looking at this calendar right now">
        <span class="rt-eye" aria-hidden="true"></span>
        <span data-presence="0">0</span>
        <span id="rt-presence-label">people looking</span>
      </p>
    </div>
  </header>
  <p class="rt-intro" id="rt-intro">Pick a time. Availability updates live as other people book.</p>
  <div class="rt-signin" id="rt-signin" data-signin hidden tabindex="-1">
    <p class="rt-signin-title" id="rt-signin-title"></p>
    <p class="rt-signin-text" id="rt-signin-text"></p>
    <a class="rt-primary rt-signin-link" id="rt-signin-link" hidden>Sign in</a>
  </div>
  <div class="rt-weekbar" role="group" aria-label="Week">
    <button type="button" class="rt-nav" data-nav="prev" aria-label="Previous week"><span aria-hidden="true">‹</span></button>
    <p class="rt-range" data-range="" id="rt-range"></p>
    <button type="button" class="rt-nav" data-nav="next" aria-label="Next week"><span aria-hidden="true">›</span></button>
    <button type="button" class="rt-nav rt-first" data-nav="first">First free</button>
  </div>
  <nav class="rt-daybar" id="rt-daybar" aria-label="Days of the week"></nav>
  <div class="rt-notice-live" role="alert">
  <div class="rt-notice" id="rt-notice" hidden tabindex="-1">
    <div class="rt-notice-body">
      <p class="rt-notice-title" id="rt-notice-title"></p>
      <p class="rt-notice-text" id="rt-notice-text"></p>
      <div class="rt-alts" id="rt-alts" data-alternatives></div>
    </div>
    <button type="button" class="rt-close" id="rt-notice-close" aria-label="Dismiss">×</button>
  </div>
  </div>
  <section class="rt-holds" id="rt-holds" hidden aria-labelledby="rt-holds-title">
    <h3 id="rt-holds-title">Held for you</h3>
    <ul id="rt-holds-list"></ul>
  </section>
  <section class="rt-mine" id="rt-mine" hidden aria-labelledby="rt-mine-title">
    <h3 id="rt-mine-title">Your bookings</h3>
    <ul id="rt-mine-list"></ul>
  </section>
  <div class="rt-empty" id="rt-empty" data-empty hidden>
    <p id="rt-empty-text">Nothing free this week.</p>
    <button type="button" class="rt-link" data-nav="next-free" id="rt-next-free" hidden></button>
  </div>
  <div class="rt-days" id="rt-days" tabindex="-1">
    <div class="rt-skeleton" aria-hidden="true"><div></div><div></div><div></div><div></div><div></div><div></div></div>
  </div>
  <footer class="rt-foot">
    <ul class="rt-legend" aria-label="Legend">
      <li><span class="rt-swatch rt-sw-available"></span>Free</li>
      <li><span class="rt-swatch rt-sw-pending"></span>Booking…</li>
      <li class="rt-hold-only"><span class="rt-swatch rt-sw-held"></span>Held</li>
      <li><span class="rt-swatch rt-sw-mine"></span>Yours</li>
      <li><span class="rt-swatch rt-sw-full"></span>Full</li>
    </ul>
    <p class="rt-powered">Live availability by <strong>realtime</strong></p>
  </footer>
  <div class="rt-sr" id="rt-announce" aria-live="polite" aria-atomic="true"></div>
</div>`;

// --- dates -------------------------------------------------------------------------------------
// Weeks are local calendar days: a week starts at local midnight of its first day and holds 7.

function midnight(ms) {
  const d = new Date(ms);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate());
}

function addDays(date, n) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate() + n);
}

function dayDiff(a, b) {
  return Math.round((b - a) / DAY); // rounding absorbs a daylight-saving hour
}

function ymd(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`;
}

function parseYmd(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text ?? "");
  if (!m) return null;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return ymd(d) === text ? d : null;
}

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function durationDays(slot) {
  const hours = (Date.parse(slot.ends_at) - Date.parse(slot.starts_at)) / HOUR;
  return hours >= 20 ? Math.round(hours / 24) : 0;
}

function when(slot) {
  const start = new Date(slot.starts_at);
  const days = durationDays(slot);
  if (days) return `${fmtDay.format(start)}, ${days} day${days > 1 ? "s" : ""}`;
  return `${fmtDay.format(start)}, ${fmtTime.format(start)}`;
}

// "10:00" for an appointment, "3 days" for a rental that starts on that day.
function shortWhen(slot) {
  const days = durationDays(slot);
  if (days) return days === 1 ? "1 day" : `${days} days`;
  return fmtTime.format(new Date(slot.starts_at));
}

function countdown(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function customerId() {
  const key = "realtime-demo-customer";
  try {
    let id = localStorage.getItem(key);
    if (!id) {
      id = "demo-" + Math.random().toString(36).slice(2, 10);
      localStorage.setItem(key, id);
    }
    return id;
  } catch {
    return undefined;
  }
}

// Bookings made from this browser, kept across reloads: {id, slot_id, ends_at} per server and
// customer (the token's subject, or the anonymous id above), the newest KEPT_MAX of them. Only
// ids: what they are now is asked of the server (GET /api/bookings/ID) after a reload.
function readKept(key) {
  try {
    const list = JSON.parse(localStorage.getItem(key) ?? "[]");
    return Array.isArray(list) ? list.filter((e) => typeof e?.id === "string" && typeof e.slot_id === "string") : [];
  } catch {
    return [];
  }
}

function writeKept(key, list) {
  try {
    if (list.length) localStorage.setItem(key, JSON.stringify(list.slice(-KEPT_MAX)));
    else localStorage.removeItem(key);
  } catch {
    /* storage full or refused (a private window): the bookings are still shown until a reload */
  }
}

// The `sub` claim of a JWT, unverified (the server checks it): whether a new token is the same
// customer's.
function tokenSubject(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), "="))).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

function isNetworkError(err) {
  return err instanceof TypeError || NETWORK_CODES.has(err?.code) || (err?.code === "ERROR" && !err?.status);
}

function browserOffline() {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

// One slot's cell, cloned for every slot. The cell itself is focusable by script only: focusing
// it (a test's locator.focus()) hands the focus to its button, the one thing in it that Tab
// reaches and Enter books with; a slot with room for several people adds the quantity field.
let PROTOTYPES = null;

function prototypes() {
  if (PROTOTYPES) return PROTOTYPES;
  const cell = document.createElement("div");
  cell.className = "rt-slot";
  cell.tabIndex = -1;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "rt-book";
  const time = document.createElement("span");
  time.className = "rt-time";
  const meta = document.createElement("span");
  meta.className = "rt-meta";
  button.append(time, meta);
  cell.append(button);
  const qty = document.createElement("label");
  qty.className = "rt-qty";
  const txt = document.createElement("span");
  txt.textContent = "Qty";
  txt.setAttribute("aria-hidden", "true");
  const input = document.createElement("input");
  input.type = "number";
  input.inputMode = "numeric";
  input.min = "1";
  input.value = "1";
  input.dataset.quantity = "";
  qty.append(txt, input);
  PROTOTYPES = { cell, qty };
  return PROTOTYPES;
}

// --- one widget --------------------------------------------------------------------------------

class BookingWidget {
  constructor(host, root, opts) {
    this.host = host;
    this.root = root;
    this.opts = opts;
    this.holdMode = opts.checkout === "hold";
    this.customerId = null; // read from localStorage at the first booking: its first use is slow
    this.client = null;
    this.target = null; // {kind, id}
    this.channel = null;
    this.services = new Map();
    this.multiService = false;
    this.cells = new Map(); // slot id -> {cell, button, meta, qty}
    this.pending = new Map(); // slot id -> requests in flight from this page
    this.mine = new Map(); // slot id -> [booking]
    this.holds = new Map(); // slot id -> hold
    this.known = new Map(); // slot id -> the newest copy seen outside the channel
    this.today = midnight(Date.now());
    this.anchor = opts.date ?? this.today; // weeks are counted from this day
    this.week = this.anchor;
    this.window = null; // {from, to} in ms
    this.loadSeq = 0;
    this.offline = browserOffline();
    this.wasLive = false;
    this.nextFree = null; // {forSeq, week} once searched
    this.changes = [];
    this.changeTimer = null;
    this.holdTimer = null;
    this.emptyTimer = null;
    this.disposers = [];
    this.me = null; // GET /api/me: {auth, customer_id}, once answered
    this.signin = null; // why booking needs a sign-in first: "none" or "expired"; null: it does not
    this.staleToken = false; // the fixed token had expired when the client asked for it
    this.tokenRefused = false; // the server refused the fixed token
    this.expiryTimer = null; // when the fixed token expires
    this.closed = false;
    this.els = this.collect();
  }

  collect() {
    const $ = (id) => this.root.getElementById(id);
    const q = (sel) => this.root.querySelector(sel);
    return {
      app: $("rt-app"),
      skip: $("rt-skip"),
      vendor: $("rt-vendor"),
      title: $("rt-title"),
      intro: $("rt-intro"),
      signin: $("rt-signin"),
      signinTitle: $("rt-signin-title"),
      signinText: $("rt-signin-text"),
      signinLink: $("rt-signin-link"),
      conn: q("[data-connection]"),
      connText: q("[data-connection] .rt-conn-text"),
      presence: q("[data-presence]"),
      presenceLabel: $("rt-presence-label"),
      range: q("[data-range]"),
      prev: q('[data-nav="prev"]'),
      next: q('[data-nav="next"]'),
      first: q('[data-nav="first"]'),
      daybar: $("rt-daybar"),
      days: $("rt-days"),
      notice: $("rt-notice"),
      noticeTitle: $("rt-notice-title"),
      noticeText: $("rt-notice-text"),
      alts: $("rt-alts"),
      noticeClose: $("rt-notice-close"),
      holds: $("rt-holds"),
      holdsList: $("rt-holds-list"),
      mine: $("rt-mine"),
      mineList: $("rt-mine-list"),
      empty: $("rt-empty"),
      emptyText: $("rt-empty-text"),
      nextFree: $("rt-next-free"),
      announce: $("rt-announce"),
    };
  }

  customer() {
    this.customerId ??= customerId();
    return this.customerId;
  }

  listen(target, type, fn) {
    target.addEventListener(type, fn);
    this.disposers.push(() => target.removeEventListener(type, fn));
  }

  // --- announcements -----------------------------------------------------------------------------

  // Notices (lost races, expiries, offline clicks, errors) are not said here: they sit in an
  // alert region of their own, which screen readers read as they appear.
  say(text) {
    const region = this.els.announce;
    region.textContent = "";
    // A fresh text node, so that a repeated message is announced again.
    setTimeout(() => {
      region.textContent = text;
    }, 30);
  }

  // --- slots ---------------------------------------------------------------------------------------

  slotOf(id) {
    const a = this.channel?.get(id);
    const b = this.known.get(String(id));
    if (!a || !b) return a ?? b;
    return Number(b.version) > Number(a.version) ? b : a;
  }

  remember(slot) {
    if (!slot?.id) return;
    const cur = this.known.get(String(slot.id));
    if (!cur || Number(slot.version) >= Number(cur.version)) this.known.set(String(slot.id), slot);
  }

  stateOf(slot) {
    const id = String(slot.id);
    if (this.pending.has(id)) return "pending";
    if (this.holds.has(id)) return "held";
    if (this.mine.has(id)) return "mine";
    return Number(slot.available) > 0 ? "available" : "full";
  }

  serviceName(slot) {
    return this.services.get(String(slot.service_id))?.name ?? "";
  }

  label(slot, state) {
    const start = new Date(slot.starts_at);
    const end = new Date(slot.ends_at);
    const svc = this.multiService ? `${this.serviceName(slot)}, ` : "";
    const days = durationDays(slot);
    const span = days
      ? `${days} day${days > 1 ? "s" : ""} from ${fmtDayLong.format(start)} ${fmtTime.format(start)} to ${fmtDayLong.format(end)}`
      : `${fmtDayLong.format(start)}, ${fmtTime.format(start)} to ${fmtTime.format(end)}`;
    const verb = this.signin ? "Sign in to book" : this.holdMode ? "Hold" : "Book";
    const what = {
      available: `${slot.available} of ${slot.capacity} free. ${verb}`,
      pending: this.holdMode ? "holding in progress" : "booking in progress",
      held: "held for you",
      mine: "booked by you",
      full: "full",
    }[state];
    return `${svc}${span}: ${what}`;
  }

  metaText(slot, state) {
    if (state === "pending") return this.holdMode ? "Holding…" : "Booking…";
    if (state === "held") return "Held";
    if (state === "mine") return "Yours ✓";
    if (state === "full") return "Full";
    const n = Number(slot.available);
    if (Number(slot.capacity) === 1) return "Free";
    return n === 1 ? "Last one" : `${n} left`;
  }

  makeCell(slot) {
    const id = String(slot.id);
    const { cell: protoCell, qty: protoQty } = prototypes();
    const cell = protoCell.cloneNode(true); // far cheaper than building 200 cells element by element
    cell.dataset.slotId = id;
    const button = cell.firstChild;
    button.firstChild.textContent = shortWhen(slot);
    let qty = null;
    if (Number(slot.capacity) > 1) {
      const wrap = protoQty.cloneNode(true);
      qty = wrap.lastChild;
      qty.setAttribute("aria-label", `Units to ${this.holdMode ? "hold" : "book"}, ${when(slot)}`);
      cell.append(wrap);
    }
    const entry = { cell, button, meta: button.lastChild, qty };
    this.cells.set(id, entry);
    this.paint(entry, slot);
    return cell;
  }

  paint(entry, slot, { flash = false } = {}) {
    const { cell, button, meta, qty } = entry;
    const state = this.stateOf(slot);
    const available = String(Math.max(0, Number(slot.available) || 0));
    const prevAvail = cell.dataset.available;
    if (cell.dataset.state !== state) cell.dataset.state = state;
    if (prevAvail !== available) cell.dataset.available = available;
    cell.classList.toggle("rt-low", state === "available" && available === "1" && Number(slot.capacity) > 1);
    meta.textContent = this.metaText(slot, state);
    button.setAttribute("aria-label", this.label(slot, state));
    button.setAttribute("aria-disabled", state === "full" || state === "pending" ? "true" : "false");
    if (qty) {
      // What a click may take: 1 to what is free now (kept in bounds as it changes).
      const max = Math.max(1, Number(available));
      qty.max = String(max);
      if (Number(qty.value) > max) qty.value = String(max);
      qty.disabled = state !== "available";
    }
    if (flash && prevAvail !== undefined && prevAvail !== available) {
      cell.classList.remove("rt-flash");
      void cell.offsetWidth; // restart the animation
      cell.classList.add("rt-flash");
    }
  }

  repaint(id, opts) {
    const slot = this.slotOf(id);
    const entry = this.cells.get(String(id));
    if (slot && entry) this.paint(entry, slot, opts);
    if (slot) this.updateDayCount(slot);
    this.queueEmptyCheck();
  }

  // Screen readers hear when a time is taken or frees up (batched, at most one message a second).
  noteChange(slot) {
    const entry = this.cells.get(String(slot.id));
    if (!entry) return;
    const before = entry.cell.dataset.state;
    const after = this.stateOf(slot);
    if (before === after || !["available", "full"].includes(before) || !["available", "full"].includes(after)) return;
    this.changes.push(after === "full" ? `${when(slot)} was just taken` : `${when(slot)} is free again`);
    if (this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = null;
      const list = this.changes.splice(0);
      this.say(list.length > 3 ? `${list.length} times changed availability.` : `${list.join(". ")}.`);
    }, 1000);
  }

  // --- the week on screen --------------------------------------------------------------------------

  visibleSlots() {
    if (!this.channel) return [];
    return this.channel.list().filter((s) => this.channel.inWindow(s));
  }

  renderAll() {
    const focused = this.root.activeElement?.closest?.("[data-slot-id]")?.dataset.slotId;
    this.renderDays();
    if (focused) this.cells.get(focused)?.button.focus({ preventScroll: true });
    this.queueEmptyCheck(0);
  }

  renderDays() {
    const { days, daybar } = this.els;
    this.cells.clear();
    days.textContent = "";
    daybar.textContent = "";
    const byDay = new Map();
    for (let i = 0; i < 7; i++) {
      const d = addDays(this.week, i);
      byDay.set(ymd(d), { date: d, slots: [] });
    }
    for (const s of this.visibleSlots()) {
      const d = midnight(Date.parse(s.starts_at));
      const k = ymd(d);
      if (!byDay.has(k)) byDay.set(k, { date: d, slots: [] });
      byDay.get(k).slots.push(s);
    }
    const frag = document.createDocumentFragment();
    const bar = document.createDocumentFragment();
    for (const [k, day] of [...byDay].sort((a, b) => a[1].date - b[1].date)) {
      const sec = document.createElement("section");
      sec.className = "rt-day";
      sec.dataset.day = k;
      const h = document.createElement("h3");
      h.id = `day-${k}-h`;
      const name = document.createElement("span");
      name.className = "rt-dname";
      name.textContent = fmtDayLong.format(day.date);
      const count = document.createElement("span");
      count.className = "rt-dcount";
      h.append(name, count);
      sec.setAttribute("aria-labelledby", h.id);
      sec.append(h);
      if (!day.slots.length) {
        const p = document.createElement("p");
        p.className = "rt-none";
        p.textContent = "No times on this day.";
        sec.append(p);
      }
      // One row per service (in the vendor's order), so a vendor's week reads like a timetable.
      const groups = new Map();
      for (const id of this.services.keys()) groups.set(id, []);
      for (const s of day.slots) {
        const key = String(s.service_id);
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(s);
      }
      for (const [svcId, list] of groups) {
        if (!list.length) continue;
        const wrap = document.createElement("div");
        wrap.className = "rt-svcgroup";
        if (this.multiService) {
          const h4 = document.createElement("h4");
          h4.textContent = this.services.get(svcId)?.name ?? "";
          wrap.append(h4);
        }
        const grid = document.createElement("div");
        grid.className = "rt-grid";
        for (const s of list) grid.append(this.makeCell(s));
        wrap.append(grid);
        sec.append(wrap);
      }
      frag.append(sec);

      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "rt-daychip";
      chip.dataset.day = k;
      const cw = document.createElement("span");
      cw.className = "rt-cw";
      cw.textContent = fmtDay.formatToParts(day.date).find((x) => x.type === "weekday")?.value ?? "";
      const cd = document.createElement("span");
      cd.className = "rt-cd";
      cd.textContent = String(day.date.getDate());
      const cf = document.createElement("span");
      cf.className = "rt-cf";
      chip.append(cw, cd, cf);
      chip.addEventListener("click", () => {
        sec.scrollIntoView({ behavior: "smooth", block: "start" });
        (sec.querySelector(".rt-book:not([aria-disabled='true'])") ?? sec.querySelector("h3")).focus?.({ preventScroll: true });
      });
      bar.append(chip);
    }
    days.append(frag);
    daybar.append(bar);
    for (const k of byDay.keys()) this.updateDayCountByKey(k);
  }

  updateDayCount(slot) {
    this.updateDayCountByKey(ymd(midnight(Date.parse(slot.starts_at))));
  }

  updateDayCountByKey(k) {
    const sec = this.els.days.querySelector(`[data-day="${k}"]`);
    if (!sec) return;
    let free = 0;
    let total = 0;
    for (const c of sec.querySelectorAll("[data-slot-id]")) {
      total++;
      if (c.dataset.state === "available") free++;
    }
    const text = total === 0 ? "" : free === 0 ? "fully booked" : `${free} free`;
    sec.querySelector(".rt-dcount").textContent = text;
    const chip = this.els.daybar.querySelector(`[data-day="${k}"]`);
    if (chip) {
      chip.querySelector(".rt-cf").textContent = total === 0 ? "–" : String(free);
      chip.classList.toggle("rt-chip-full", total > 0 && free === 0);
      chip.setAttribute("aria-label", `${fmtDayLong.format(parseYmd(k))}: ${text || "no times"}`);
    }
  }

  showRange() {
    const { range, prev } = this.els;
    const last = addDays(this.week, 6);
    range.dataset.range = ymd(this.week);
    const sameYear = this.week.getFullYear() === last.getFullYear() && last.getFullYear() === this.today.getFullYear();
    range.textContent = `${fmtDay.format(this.week)} – ${fmtDay.format(last)}${sameYear ? "" : ` ${last.getFullYear()}`}`;
    // Weeks before the one holding today have nothing left to book.
    prev.disabled = this.week <= this.today;
  }

  windowOf(week) {
    const start = week.getTime();
    const to = addDays(week, 7).getTime();
    const now = Date.now();
    // This week starts at the current hour: what already ended cannot be booked.
    const from = start < now && now < to ? now - (now % HOUR) : start;
    return { from, to };
  }

  weekOf(ms) {
    return addDays(this.anchor, 7 * Math.floor(dayDiff(this.anchor, midnight(ms)) / 7));
  }

  // Show another week. The old week's channel stays subscribed until the new week is read, then
  // the new one subscribes from the cursor of that read: nothing that happens meanwhile is lost.
  async go(week, { announce = true } = {}) {
    const seq = ++this.loadSeq;
    const before = { week: this.week, window: this.window };
    this.week = week;
    this.nextFree = null;
    this.showRange();
    this.els.app.setAttribute("aria-busy", "true");
    const win = this.windowOf(week);
    let avail;
    try {
      avail = await this.client.getAvailability({ [this.target.kind]: this.target.id, from: iso(win.from), to: iso(win.to) });
    } catch (err) {
      if (seq !== this.loadSeq || this.closed) return false;
      this.week = before.week;
      this.showRange();
      this.els.app.removeAttribute("aria-busy");
      this.showProblem(err, "That week could not be loaded", "the week shown is unchanged", "You are offline: that week could not be loaded.");
      return false;
    }
    if (seq !== this.loadSeq || this.closed) return false; // a closed client must not reconnect
    this.window = win;
    const name = avail.channel ?? `${this.target.kind}:${this.target.id}`;
    if (this.channel) this.client.unsubscribe(this.channel.name);
    const channel = (this.channel = this.client.subscribe(name, {
      since: avail.cursor,
      from: iso(win.from),
      to: iso(win.to),
      slots: avail.slots,
    }));
    this.bindChannel(channel);
    if (this.els.notice.dataset.kind !== "offline") this.hideNotice(); // it was about the old week
    this.renderAll();
    this.els.app.removeAttribute("aria-busy");
    if (announce) this.say(`Week of ${fmtDayLong.format(week)}.`);
    return true;
  }

  bindChannel(channel) {
    const mine = (fn) => (d) => {
      if (this.channel === channel) fn(d);
    };
    channel.on("snapshot", mine(() => {
      // After a reconnect that needed a full snapshot: repaint in place when the same slots are
      // there (keeps focus and scroll), rebuild only when slots came or went.
      const list = this.visibleSlots();
      if (list.length === this.cells.size && list.every((s) => this.cells.has(String(s.id)))) {
        for (const s of list) {
          this.noteChange(s);
          this.repaint(String(s.id), { flash: true });
        }
      } else {
        this.renderAll();
      }
    }));
    channel.on("availability:updated", mine(({ slot }) => {
      const id = String(slot.id);
      if (!this.cells.has(id)) {
        if (channel.inWindow(slot)) this.renderAll(); // a new slot appeared
        return;
      }
      const ending = this.holds.get(id)?.ending;
      if (ending && Number(slot.version) > ending.version) return this.expired(id);
      this.noteChange(slot);
      this.repaint(id, { flash: true });
    }));
    channel.on("conflict:detected", mine(({ slot }) => {
      if (slot) this.repaint(String(slot.id));
    }));
    channel.on("presence", mine(({ count }) => this.showPresence(count)));
  }

  // --- a week with nothing free ----------------------------------------------------------------------

  queueEmptyCheck(delay = 150) {
    if (this.emptyTimer) return;
    this.emptyTimer = setTimeout(() => {
      this.emptyTimer = null;
      this.checkEmpty();
    }, delay);
  }

  checkEmpty() {
    if (!this.window || this.els.app.getAttribute("aria-busy") === "true") return;
    let any = false;
    for (const { cell } of this.cells.values()) if (cell.dataset.state === "available") any = true;
    const { empty, emptyText, nextFree } = this.els;
    if (any) {
      empty.hidden = true;
      return;
    }
    const none = this.cells.size === 0;
    emptyText.textContent = none ? "Nothing free this week: there are no times to book." : "Nothing free this week: every time is taken.";
    empty.hidden = false;
    const seq = this.loadSeq;
    if (this.nextFree?.forSeq === seq) return;
    this.nextFree = { forSeq: seq, week: null };
    nextFree.hidden = true;
    this.findFree(this.window.to).then(
      (week) => {
        if (seq !== this.loadSeq) return;
        this.nextFree.week = week;
        if (week) {
          nextFree.textContent = `Next free week: ${fmtDayLong.format(week)}`;
          nextFree.hidden = false;
        } else {
          emptyText.textContent += " Nothing is free in the coming year either.";
        }
      },
      () => {
        if (seq === this.loadSeq) this.nextFree = null; // try again on the next check
      },
    );
  }

  // The week (counted from the anchor) of the first slot with a unit free that starts at or
  // after `fromMs`, or null when there is none within a year.
  async findFree(fromMs) {
    const now = Date.now();
    const start = Math.max(fromMs, now - (now % HOUR));
    for (let a = start; a < start + SEARCH_LIMIT_DAYS * DAY; a += SEARCH_CHUNK_DAYS * DAY) {
      const b = a + SEARCH_CHUNK_DAYS * DAY;
      const res = await this.client.getAvailability({ [this.target.kind]: this.target.id, from: iso(a), to: iso(b) });
      const first = (res.slots ?? [])
        .filter((s) => Number(s.available) > 0 && Date.parse(s.starts_at) >= a && !this.holds.has(String(s.id)))
        .reduce((m, s) => (m == null || Date.parse(s.starts_at) < m ? Date.parse(s.starts_at) : m), null);
      if (first != null) return this.weekOf(first);
    }
    return null;
  }

  async goFirstFree(fromMs, what) {
    this.els.first.setAttribute("aria-busy", "true");
    let week;
    try {
      week = await this.findFree(fromMs);
    } catch (err) {
      this.showProblem(err, "Could not look for free times", "the week shown is unchanged", "You are offline: free times could not be looked up.");
      return;
    } finally {
      this.els.first.removeAttribute("aria-busy");
    }
    if (!week) {
      this.showNotice(`No free ${what} in the coming year.`, "Every time is taken or none are offered yet.", [], { kind: "info" });
      return;
    }
    if (await this.go(week, { announce: false })) this.say(`First free week: ${fmtDayLong.format(week)}.`);
  }

  // --- booking and holding ---------------------------------------------------------------------------

  quantityFor(id, slot) {
    const qty = this.cells.get(id)?.qty;
    if (!qty) return 1;
    const n = Math.floor(Number(qty.value));
    return Math.min(Math.max(1, Number.isFinite(n) ? n : 1), Math.max(1, Number(slot.available)));
  }

  onSlotClick(id) {
    const slot = this.slotOf(id);
    if (!slot) return;
    const state = this.stateOf(slot);
    if (state === "available") {
      if (this.signin) return this.askSignIn(id);
      if (this.offline || browserOffline()) return this.offlineClick();
      const quantity = this.quantityFor(id, slot);
      return this.holdMode ? this.hold(id, quantity) : this.book(id, quantity);
    }
    if (state === "mine" || state === "held") {
      const list = state === "held" ? this.els.holdsList : this.els.mineList;
      const btn = list.querySelector(`button[data-for-slot="${CSS.escape(id)}"]`);
      if (btn) {
        btn.focus();
        btn.closest("li")?.classList.add("rt-attn");
        setTimeout(() => btn.closest("li")?.classList.remove("rt-attn"), 1200);
      }
      return;
    }
    if (state === "full") {
      this.showAlternatives(slot, this.nearbyFree(slot), { title: "This time is full.", text: "These are the nearest free times:" });
    }
  }

  offlineClick() {
    this.showNotice(`${OFFLINE_TEXT}.`, "Times will update by themselves when you are back online; then try again.", [], { kind: "offline" });
  }

  start(id) {
    this.pending.set(id, (this.pending.get(id) ?? 0) + 1);
    this.hideNotice();
    this.repaint(id);
  }

  done(id) {
    const n = (this.pending.get(id) ?? 1) - 1;
    if (n > 0) this.pending.set(id, n);
    else this.pending.delete(id);
  }

  async book(id, quantity) {
    const slot = this.slotOf(id);
    this.start(id);
    this.say(`Booking ${slot ? when(slot) : "this time"}…`);
    try {
      const res = await this.client.book(id, { quantity, customerId: this.customer() });
      this.done(id);
      this.booked(id, res);
      this.say(`Booked: ${quantity > 1 ? `${quantity} places, ` : ""}${slot ? when(slot) : "your time"}. It's yours.`);
    } catch (err) {
      this.done(id);
      this.failed(id, slot, err, "booked");
    }
  }

  booked(id, res) {
    this.remember(res?.slot);
    const list = this.mine.get(id) ?? [];
    if (res?.booking) {
      list.push(res.booking);
      this.keep(res.booking, res.slot);
    }
    this.mine.set(id, list);
    this.repaint(id);
    this.renderMine();
  }

  async hold(id, quantity) {
    const slot = this.slotOf(id);
    this.start(id);
    this.say(`Holding ${slot ? when(slot) : "this time"}…`);
    try {
      const ttlSeconds = this.opts.holdTtl ?? undefined;
      const res = await this.client.hold(id, { quantity, ttlSeconds });
      this.done(id);
      this.remember(res?.slot);
      this.holds.set(id, res.hold);
      this.repaint(id);
      this.renderHolds();
      const left = countdown(Date.parse(res.hold.expires_at) - Date.now());
      this.say(`Held for you: ${slot ? when(slot) : "your time"}, for ${left}. Confirm to book it.`);
      this.els.holdsList.querySelector(`[data-action="confirm"][data-for-slot="${CSS.escape(id)}"]`)?.focus();
    } catch (err) {
      this.done(id);
      this.failed(id, slot, err, "held");
    }
  }

  async confirm(id, li) {
    const hold = this.holds.get(id);
    if (!hold) return;
    if (this.offline || browserOffline()) return this.offlineClick();
    li.classList.add("rt-busy");
    try {
      const res = await this.client.book(id, { holdId: hold.id, customerId: this.customer() });
      this.holds.delete(id);
      this.booked(id, res);
      this.renderHolds();
      const s = this.slotOf(id);
      this.say(`Booked: ${s ? when(s) : "your time"}. It's yours.`);
      this.cells.get(id)?.button.focus();
    } catch (err) {
      li.classList.remove("rt-busy");
      if (err?.code === "HOLD_EXPIRED" || err?.code === "HOLD_NOT_FOUND") return this.expired(id);
      this.showProblem(err, "The booking did not go through", "your hold is kept until it expires");
    }
  }

  async release(id, li) {
    const hold = this.holds.get(id);
    if (!hold) return;
    if (this.offline || browserOffline()) {
      this.showNotice("You are offline: the hold was not given back.", "It will expire by itself, or try again when you are back online.", [], { kind: "offline" });
      return;
    }
    li.classList.add("rt-busy");
    try {
      const body = await this.giveBack(hold);
      this.remember(body?.slot);
      this.holds.delete(id);
      this.repaint(id);
      this.renderHolds();
      const s = this.slotOf(id);
      this.say(`Released: ${s ? when(s) : "the time"} is free for others again.`);
      this.cells.get(id)?.button.focus();
    } catch (err) {
      li.classList.remove("rt-busy");
      this.showProblem(err, "The hold could not be given back", "it will expire by itself");
    }
  }

  // The hold given back: `{slot}`, or null when the server no longer has it (expired meanwhile).
  async giveBack(hold) {
    if (typeof this.client.release === "function") {
      try {
        return await this.client.release(hold);
      } catch (err) {
        if (err?.code === "HOLD_NOT_FOUND") return null;
        throw err;
      }
    }
    // A library without release(): the HTTP route itself.
    const res = await fetch(`${this.httpBase}/api/holds/${encodeURIComponent(hold.id)}`, {
      method: "DELETE",
      headers: { accept: "application/json" },
    });
    const body = await res.json().catch(() => null);
    if (res.status === 404) return null;
    if (!res.ok) throw Object.assign(new Error(body?.error?.message ?? `HTTP ${res.status}`), { status: res.status, ...(body?.error ?? {}) });
    return body;
  }

  expired(id) {
    if (!this.holds.has(id)) return;
    this.holds.delete(id);
    this.repaint(id);
    this.renderHolds();
    const s = this.slotOf(id);
    const title = "Your hold expired.";
    const text = `${s ? when(s) : "That time"} was given back${s && Number(s.available) > 0 ? " and is free again: pick it to hold it anew" : ""}.`;
    this.showNotice(title, text, [], { kind: "info" });
  }

  failed(id, slot, err, verb) {
    this.remember(err?.slot);
    this.repaint(id, { flash: true });
    if (err?.code === "UNAUTHORIZED") return this.refused(id);
    const now = this.slotOf(id) ?? slot;
    if (err?.code === "BOOKING_CONFLICT") {
      const gone = !now || Number(now.available) <= 0;
      const exclusive = now && this.services.get(String(now.service_id))?.exclusive;
      this.showAlternatives(now, err.alternatives ?? [], gone
        ? {
            title: "Someone else just took it.",
            text: `${now ? when(now) : "That time"} was ${verb} by someone else a moment before you. Nearest free times:`,
          }
        : {
            title: "That time can't be booked.",
            text: exclusive
              ? `${when(now)} overlaps another booking of ${this.serviceName(now)}. Free instead:`
              : `Only ${now.available} left there, fewer than you asked for. Free instead:`,
          });
      return;
    }
    if (!(this.offline || browserOffline()) && (err?.code === "TIMEOUT" || err?.outcome === "unknown")) {
      // The request may have reached the server: claiming either outcome could be wrong.
      this.showNotice("No answer from the booking server yet.", `We cannot tell whether it was ${verb}. The times here update by themselves once the server answers; please check before trying again.`, [], { kind: "error" });
      return;
    }
    this.showProblem(err, "That didn't go through", `nothing was ${verb}`);
  }

  // An error told in words: the server's own message when it gave one, never the browser's
  // ("Failed to fetch") or the library's.
  showProblem(err, title, consequence, offline = `You are offline: ${consequence}.`) {
    if (err?.code === "UNAUTHORIZED") return this.refused(null);
    if ((this.offline || browserOffline()) && isNetworkError(err)) {
      const text = consequence === "nothing was booked" || consequence === "nothing was held" ? `${OFFLINE_TEXT}.` : offline;
      this.showNotice(text, "Try again when you are back online.", [], { kind: "offline" });
      return;
    }
    const why = isNetworkError(err)
      ? "The booking server could not be reached"
      : err?.status >= 500 || !err?.message
        ? "The booking server had a problem"
        : err.message.replace(/\.$/, "");
    const text = `${why}: ${consequence}. Please try again.`;
    this.showNotice(`${title}.`, text, [], { kind: "error" });
  }

  // --- holds and bookings lists ------------------------------------------------------------------

  renderHolds() {
    const { holds, holdsList } = this.els;
    holdsList.textContent = "";
    const entries = [...this.holds].sort((a, b) => Date.parse(a[1].expires_at) - Date.parse(b[1].expires_at));
    for (const [slotId, hold] of entries) {
      const s = this.slotOf(slotId);
      const li = document.createElement("li");
      const what = document.createElement("span");
      what.className = "rt-mine-when";
      what.textContent = `${s ? when(s) : "Your time"}${Number(hold.quantity) > 1 ? ` × ${hold.quantity}` : ""}`;
      const left = document.createElement("span");
      left.className = "rt-left";
      const timer = document.createElement("span");
      timer.dataset.holdExpires = hold.expires_at;
      timer.dataset.timerFor = slotId;
      timer.setAttribute("role", "timer");
      timer.setAttribute("aria-label", "Time left to confirm");
      timer.textContent = countdown(Date.parse(hold.expires_at) - Date.now());
      left.append(timer, document.createTextNode(" left"));
      const confirm = document.createElement("button");
      confirm.type = "button";
      confirm.className = "rt-primary";
      confirm.dataset.action = "confirm";
      confirm.dataset.forSlot = slotId;
      confirm.textContent = "Confirm booking";
      confirm.addEventListener("click", () => this.confirm(slotId, li));
      const release = document.createElement("button");
      release.type = "button";
      release.className = "rt-link";
      release.dataset.action = "release";
      release.dataset.forSlot = slotId;
      release.textContent = "Release";
      release.setAttribute("aria-label", `Release your hold${s ? " on " + when(s) : ""}`);
      release.addEventListener("click", () => this.release(slotId, li));
      const actions = document.createElement("span");
      actions.className = "rt-actions";
      actions.append(confirm, release);
      li.append(what, left, actions);
      holdsList.append(li);
    }
    holds.hidden = entries.length === 0;
    if (entries.length && !this.holdTimer) this.holdTimer = setInterval(() => this.tickHolds(), 250);
    if (!entries.length && this.holdTimer) {
      clearInterval(this.holdTimer);
      this.holdTimer = null;
    }
  }

  tickHolds() {
    const now = Date.now();
    for (const [slotId, hold] of [...this.holds]) {
      const left = Date.parse(hold.expires_at) - now;
      if (left <= 0) {
        // The server gives the units back within a second or so: until its update arrives the
        // slot would read as taken, so the hold stays shown at 0:00 until then (or a few seconds).
        hold.ending ??= { version: Number(this.slotOf(slotId)?.version ?? 0), at: now };
        if (now - hold.ending.at > HOLD_GRACE) this.expired(slotId);
      }
      const timer = this.els.holdsList.querySelector(`[data-timer-for="${CSS.escape(slotId)}"]`);
      const text = countdown(left);
      if (timer && timer.textContent !== text) timer.textContent = text;
    }
  }

  async cancelBooking(slotId, booking, li) {
    if (this.offline || browserOffline()) {
      this.showNotice("You are offline: nothing was cancelled.", "Try again when you are back online.", [], { kind: "offline" });
      return;
    }
    li.classList.add("rt-busy");
    try {
      const res = await this.client.cancel(booking.id);
      this.forget([booking.id]);
      this.remember(res?.slot);
      const list = (this.mine.get(slotId) ?? []).filter((b) => b.id !== booking.id);
      if (list.length) this.mine.set(slotId, list);
      else this.mine.delete(slotId);
      this.repaint(slotId);
      this.renderMine();
      const s = this.slotOf(slotId);
      this.say(`Cancelled: ${s ? when(s) : "your booking"}.`);
      this.cells.get(slotId)?.button.focus();
    } catch (err) {
      li.classList.remove("rt-busy");
      this.showProblem(err, "Could not cancel", "the booking is still yours");
    }
  }

  renderMine() {
    const { mine, mineList } = this.els;
    mineList.textContent = "";
    const entries = [];
    for (const [slotId, list] of this.mine) for (const b of list) entries.push([slotId, b]);
    const start = (id) => Date.parse(this.slotOf(id)?.starts_at ?? 0);
    entries.sort((a, b) => start(a[0]) - start(b[0]));
    for (const [slotId, booking] of entries) {
      const s = this.slotOf(slotId);
      const li = document.createElement("li");
      li.dataset.bookingId = booking.id;
      const span = document.createElement("span");
      span.className = "rt-mine-when";
      const qty = Number(booking.quantity) > 1 ? ` × ${booking.quantity}` : "";
      span.textContent = s ? `${when(s)}${qty}${this.multiService ? " · " + this.serviceName(s) : ""}` : "Booking";
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "rt-link";
      btn.dataset.cancelSlot = slotId;
      btn.dataset.forSlot = slotId;
      btn.textContent = "Cancel";
      btn.setAttribute("aria-label", `Cancel your booking${s ? " on " + when(s) : ""}`);
      btn.addEventListener("click", () => this.cancelBooking(slotId, booking, li));
      li.append(span, btn);
      mineList.append(li);
    }
    mine.hidden = entries.length === 0;
  }

  // --- signing in ----------------------------------------------------------------------------------

  // The token for the client: the page's getToken, else the token attribute. A fixed token that
  // has expired is not sent (the server would close the socket over it): the widget asks for a
  // sign-in instead, and keeps showing the times.
  async token(ctx) {
    const token = await this.host.currentToken(ctx);
    if (typeof token !== "string" || !token) return null;
    if (this.host.getToken) return token; // the page's own: the client refreshes it
    const exp = tokenExpiry(token);
    if (this.tokenRefused || (exp != null && exp <= Date.now())) {
      this.staleToken = true;
      if (this.me?.auth) this.setSignIn("expired");
      return null;
    }
    return token;
  }

  // A fixed token says when it expires: from then on a click asks for a sign-in.
  watchExpiry(token) {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    const exp = this.host.getToken ? null : tokenExpiry(token);
    if (exp == null) return;
    this.expiryTimer = setTimeout(() => this.me?.auth !== false && this.setSignIn("expired"), Math.min(Math.max(0, exp - Date.now()), 2 ** 31 - 1));
  }

  setSignIn(reason) {
    const before = this.signin;
    this.signin = reason;
    const { signin, signinTitle, signinText, signinLink, app } = this.els;
    signin.hidden = !reason;
    if (reason) {
      [signinTitle.textContent, signinText.textContent] = SIGNIN_TEXT[reason];
      app.dataset.auth = "signin";
      if (this.opts.signinUrl) {
        signinLink.href = this.opts.signinUrl;
        signinLink.hidden = false;
      }
    } else {
      delete app.dataset.auth;
    }
    if (before !== reason) for (const id of this.cells.keys()) this.repaint(id); // the labels say it
  }

  // A click that needs a sign-in: say so, and tell the page (which may open its own sign-in).
  askSignIn(slotId) {
    const { signin, signinLink } = this.els;
    signin.classList.remove("rt-attn");
    void signin.offsetWidth; // restart the animation
    signin.classList.add("rt-attn");
    (signinLink.hidden ? signin : signinLink).focus();
    this.say(SIGNIN_TEXT[this.signin].join(" "));
    const detail = { reason: this.signin, slotId: slotId ?? null };
    this.host.dispatchEvent(new CustomEvent("realtime-signin", { bubbles: true, composed: true, detail }));
  }

  // The server refused the token (the client already fetched a fresh one and tried again).
  refused(slotId) {
    this.hideNotice();
    this.setSignIn(this.me?.customer_id || this.host.hasTokenProvider() ? "expired" : "none");
    this.askSignIn(slotId);
  }

  // What GET /api/me said (or the error it ended in) decides whether booking needs a sign-in.
  signedIn(me) {
    if (me?.code === "UNAUTHORIZED") {
      me = { auth: true, customer_id: null, refused: true };
      this.tokenRefused = true; // a fixed token the server refuses is not put on the socket's URL
    }
    if (typeof me?.auth !== "boolean") return; // an older server, or none reached: find out at a click
    this.me = me;
    if (me.auth && !me.customer_id) this.setSignIn(me.refused || this.staleToken ? "expired" : "none");
  }

  // --- bookings kept across reloads --------------------------------------------------------------

  keptKey() {
    if (!this.me) return null;
    const who = this.me.auth ? this.me.customer_id : this.customer();
    return who ? `realtime-bookings:${this.httpBase}:${who}` : null;
  }

  keep(booking, slot) {
    const key = this.keptKey();
    if (!key) return;
    const list = readKept(key).filter((e) => e.id !== booking.id);
    list.push({ id: String(booking.id), slot_id: String(booking.slot_id), ends_at: slot?.ends_at ?? null });
    writeKept(key, list);
  }

  forget(ids) {
    const key = this.keptKey();
    if (!key || !ids.length) return;
    const gone = new Set(ids);
    writeKept(key, readKept(key).filter((e) => !gone.has(e.id)));
  }

  // After a reload: the kept bookings still confirmed are `mine` again and listed; the ones
  // cancelled, unknown or over are forgotten. One read per booking, all at once (at most KEPT_MAX).
  async restoreMine() {
    const key = this.keptKey();
    if (!key) return;
    const now = Date.now();
    const all = readKept(key);
    const ended = all.filter((e) => Date.parse(e.ends_at) <= now);
    const open = all.filter((e) => !ended.includes(e));
    const answers = await Promise.all(open.map((e) => this.client.getBooking(e.id).then(
      (r) => r,
      (err) => (err?.status === 404 ? null : undefined), // undefined: not answered, ask next time
    )));
    if (this.closed) return;
    const gone = ended.map((e) => e.id);
    open.forEach((e, i) => {
      const r = answers[i];
      if (r === undefined) return;
      if (r?.booking?.status !== "confirmed") return gone.push(e.id);
      if (!this.services.has(String(r.slot?.service_id))) return; // booked on another widget
      this.remember(r.slot);
      const id = String(r.slot.id);
      const list = this.mine.get(id) ?? [];
      if (!list.some((b) => b.id === r.booking.id)) list.push(r.booking);
      this.mine.set(id, list);
      this.repaint(id);
    });
    this.forget(gone);
    this.renderMine();
  }

  // --- notices and alternatives ------------------------------------------------------------------

  nearbyFree(slot) {
    const t = Date.parse(slot.starts_at);
    return this.visibleSlots()
      .filter((s) => s.id !== slot.id && s.service_id === slot.service_id && this.stateOf(s) === "available")
      .sort((a, b) => Math.abs(Date.parse(a.starts_at) - t) - Math.abs(Date.parse(b.starts_at) - t))
      .slice(0, 5);
  }

  showNotice(title, text, alternatives, { kind = "warn" } = {}) {
    const { notice, noticeTitle, noticeText, alts } = this.els;
    noticeTitle.textContent = title;
    noticeText.textContent = text;
    alts.textContent = "";
    const sorted = [...alternatives].sort((x, y) => Date.parse(x.starts_at) - Date.parse(y.starts_at));
    for (const alt of sorted) {
      this.remember(alt);
      const s = this.slotOf(alt.id);
      const b = document.createElement("button");
      b.type = "button";
      b.className = "rt-alt";
      b.dataset.alternativeSlotId = alt.id;
      const svc = this.multiService || s.service_id !== sorted[0]?.service_id ? this.serviceName(s) : "";
      const w = document.createElement("span");
      w.className = "rt-alt-when";
      w.textContent = when(s);
      const m = document.createElement("span");
      m.className = "rt-alt-meta";
      m.textContent = [svc, this.metaText(s, "available")].filter(Boolean).join(" · ");
      b.append(w, m);
      b.setAttribute("aria-label", `${this.holdMode ? "Hold" : "Book"} ${when(s)} instead`);
      b.addEventListener("click", () => {
        const id = String(alt.id);
        const cur = this.slotOf(id);
        if (cur && this.stateOf(cur) !== "available") {
          b.disabled = true;
          m.textContent = "Taken";
          return;
        }
        if (this.signin) return this.askSignIn(id);
        if (this.offline || browserOffline()) return this.offlineClick();
        if (this.holdMode) this.hold(id, 1);
        else this.book(id, 1);
        this.cells.get(id)?.cell.scrollIntoView({ behavior: "smooth", block: "center" });
      });
      alts.append(b);
    }
    if (!sorted.length && kind === "conflict") {
      const p = document.createElement("p");
      p.className = "rt-none";
      p.textContent = "No other free times nearby, sorry.";
      alts.append(p);
    }
    notice.dataset.kind = kind;
    notice.hidden = false;
  }

  showAlternatives(slot, alternatives, { title, text }) {
    this.showNotice(title, text, alternatives, { kind: "conflict" });
    this.els.notice.dataset.forSlot = slot?.id ?? "";
    this.els.notice.scrollIntoView?.({ behavior: "smooth", block: "nearest" });
  }

  hideNotice() {
    this.els.notice.hidden = true;
    delete this.els.notice.dataset.forSlot;
  }

  // --- connection and presence -------------------------------------------------------------------

  showConnection() {
    // The browser knows at once when the network is gone; the socket only notices at its next
    // heartbeat, so the browser's word wins.
    const state = this.offline ? "offline" : this.client?.state ?? "offline";
    const title = {
      live: "Live: you see changes the moment they happen",
      reconnecting: "Reconnecting… times shown may be out of date for a moment",
      offline: "Offline: times shown may be out of date",
    }[state] ?? state;
    const { conn, connText, app } = this.els;
    if (conn.dataset.connection !== state) {
      const previous = conn.dataset.connection;
      conn.dataset.connection = state;
      connText.textContent = state;
      conn.title = title;
      app.dataset.connState = state;
      if (state === "offline" && this.offline) this.say("You are offline. Times shown may be out of date.");
      else if (state === "reconnecting" && previous === "live") this.say("Connection lost. Reconnecting…");
      else if (state === "live" && this.wasLive && previous !== "live") this.say("Back online. Times are up to date.");
    }
    if (state === "live") this.wasLive = true;
  }

  showPresence(count) {
    const n = Math.max(0, Number(count) || 0);
    const { presence, presenceLabel } = this.els;
    presence.closest(".rt-presence")?.classList.remove("rt-unknown");
    presence.dataset.presence = String(n);
    presence.textContent = String(n);
    presenceLabel.textContent = n === 1 ? "person looking (you)" : n === 2 ? "people looking, you and 1 other" : "people looking";
  }

  // --- start and stop ------------------------------------------------------------------------------

  fail(message) {
    const { app, vendor, title, intro, days, daybar } = this.els;
    app.removeAttribute("aria-busy");
    vendor.textContent = "";
    title.textContent = "Nothing to book here";
    intro.textContent = message;
    days.textContent = "";
    daybar.textContent = "";
  }

  loadError(err, what) {
    if (isNetworkError(err)) {
      return this.offline || browserOffline()
        ? `You are offline: ${what} could not be loaded. Reload the page when you are back online.`
        : `The booking server could not be reached: ${what} could not be loaded. Please try again later.`;
    }
    if (err?.status === 404) return null;
    return `${what[0].toUpperCase()}${what.slice(1)} could not be loaded: ${err?.message || "the server had a problem"}.`;
  }

  async run() {
    const { opts, els } = this;
    els.app.classList.toggle("rt-hold-mode", this.holdMode);
    if (this.holdMode) els.intro.textContent = "Pick a time to hold it while you check out, then confirm. Availability updates live.";
    this.showRange();
    const wsUrl = new URL("/ws", opts.server);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    this.httpBase = new URL(opts.server).origin;
    const getToken = this.host.hasTokenProvider() ? (ctx) => this.token(ctx) : undefined;
    const client = (this.client = new RealtimeClient({ url: wsUrl.toString(), httpUrl: this.httpBase, getToken }));
    // Asked at once, beside the vendor's name: whether booking needs a sign-in decides the labels.
    const asked = client.getMe().then((me) => me, (err) => err);
    this.watchExpiry(this.host.getAttribute("token"));
    this.listen(window, "offline", () => {
      this.offline = true;
      this.showConnection();
    });
    this.listen(window, "online", () => {
      this.offline = false;
      this.showConnection();
    });
    this.listen(els.noticeClose, "click", () => this.hideNotice());
    this.listen(this.root, "keydown", (ev) => {
      if (ev.key === "Escape" && !els.notice.hidden) this.hideNotice();
    });
    // One listener for every slot: a click anywhere in a cell but its quantity field.
    this.listen(els.days, "click", (ev) => {
      const cell = ev.target.closest?.("[data-slot-id]");
      if (cell && !ev.target.closest("label, input")) this.onSlotClick(cell.dataset.slotId);
    });
    this.listen(els.days, "focusin", (ev) => {
      if (ev.target.matches?.("[data-slot-id]")) this.cells.get(ev.target.dataset.slotId)?.button.focus();
    });
    this.listen(els.skip, "click", (ev) => {
      ev.preventDefault();
      els.days.focus();
    });
    this.listen(els.prev, "click", () => this.go(addDays(this.week, -7)));
    this.listen(els.next, "click", () => this.go(addDays(this.week, 7)));
    this.listen(els.first, "click", () => this.goFirstFree(0, "times"));
    this.listen(els.nextFree, "click", () => {
      if (this.nextFree?.week) this.go(this.nextFree.week);
    });

    let t;
    try {
      if (opts.service) t = { kind: "service", id: opts.service };
      else if (opts.vendor) t = { kind: "vendor", id: opts.vendor };
      else t = { kind: "vendor", id: (await client.getDemo()).vendor_id };
    } catch (err) {
      if (this.closed) return;
      return this.fail(this.loadError(err, "the demo") ?? "There is no demo vendor on this server. Start it with --demo, or give a service or a vendor.");
    }
    if (this.closed) return;
    this.target = t;
    try {
      if (t.kind === "vendor") {
        const vendor = await client.getVendor(t.id);
        for (const s of vendor.services ?? []) this.services.set(String(s.id), s);
        els.vendor.textContent = vendor.name;
        els.title.textContent = this.services.size === 1 ? [...this.services.values()][0].name : "Book a time";
        this.multiService = this.services.size > 1;
        if (opts.setTitle) document.title = `Book · ${vendor.name}`;
      } else {
        const service = await client.getService(t.id);
        this.services.set(String(service.id), service);
        els.title.textContent = service.name;
        if (opts.setTitle) document.title = `Book · ${service.name}`;
        client.getVendor(service.vendor_id).then(
          (v) => {
            els.vendor.textContent = v.name;
            if (opts.setTitle) document.title = `Book · ${service.name} · ${v.name}`;
          },
          () => {
            els.vendor.textContent = "";
          },
        );
      }
    } catch (err) {
      if (this.closed) return;
      return this.fail(this.loadError(err, `this ${t.kind}`) ?? `No such ${t.kind}: ${t.id}`);
    }
    const me = await asked;
    if (this.closed) return;
    this.signedIn(me);

    client.on("state", () => this.showConnection());
    if (!(await this.go(this.week, { announce: false }))) {
      if (!this.channel && !this.closed) this.fail(this.loadError({ code: "NETWORK_ERROR" }, "availability"));
      return;
    }
    this.showConnection();
    this.restoreMine();
  }

  destroy() {
    this.closed = true; // a run() still awaiting the server stops where it is
    for (const off of this.disposers.splice(0)) off();
    for (const t of [this.changeTimer, this.emptyTimer, this.expiryTimer]) if (t) clearTimeout(t);
    if (this.holdTimer) clearInterval(this.holdTimer);
    this.client?.close();
  }
}

// --- the custom element ------------------------------------------------------------------------

const OPTION_ATTRIBUTES = ["service", "vendor", "server", "checkout", "date", "hold-ttl", "query-params", "signin-url"];

function ttl(value) {
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 && n <= 3600 ? n : null;
}

export class RealtimeBookingElement extends HTMLElement {
  static get observedAttributes() {
    return [...OPTION_ATTRIBUTES, "token"];
  }

  // Signed-in sites: a function returning (a Promise of) the customer's JWT, called at connect,
  // before the token expires and after the server refused it. Setting it starts the widget over.
  get getToken() {
    return this._getToken ?? null;
  }

  set getToken(fn) {
    const before = this._getToken ?? null;
    this._getToken = typeof fn === "function" ? fn : null;
    if (this.widget && before !== this._getToken) this.restart();
  }

  // A fixed JWT, the `token` attribute (pages that render it on the server).
  get token() {
    return this.getAttribute("token");
  }

  set token(value) {
    if (value == null || value === "") this.removeAttribute("token");
    else this.setAttribute("token", String(value));
  }

  hasTokenProvider() {
    return !!this._getToken || this.hasAttribute("token");
  }

  currentToken(ctx) {
    return this._getToken ? this._getToken(ctx) : this.getAttribute("token") || null;
  }

  options() {
    const attr = (name) => this.getAttribute(name) || null;
    const page = this.hasAttribute("query-params") ? new URLSearchParams(location.search) : new URLSearchParams();
    const pick = (name, param = name) => page.get(param) || attr(name);
    const server = attr("server") ?? new URL(import.meta.url).origin;
    const service = pick("service");
    return {
      service,
      vendor: service ? null : pick("vendor"),
      server: new URL(server, location.href).href,
      checkout: pick("checkout") === "hold" ? "hold" : "book",
      date: parseYmd(pick("date")),
      holdTtl: ttl(pick("hold-ttl", "hold_ttl") ?? page.get("ttl_seconds")),
      setTitle: this.hasAttribute("query-params"),
      signinUrl: attr("signin-url") ? new URL(attr("signin-url"), location.href).href : null,
    };
  }

  connectedCallback() {
    // A property set before this module defined the element hides the class's accessor: take
    // it over (the usual upgrade dance for custom elements).
    for (const name of ["getToken", "token"]) {
      if (Object.prototype.hasOwnProperty.call(this, name)) {
        const value = this[name];
        delete this[name];
        this[name] = value;
      }
    }
    this.restart();
  }

  disconnectedCallback() {
    this.widget?.destroy();
    this.widget = null;
  }

  attributeChangedCallback(name, before, after) {
    if (before === after || !this.widget) return;
    if (name === "token") {
      if (this._getToken) return; // getToken wins
      const w = this.widget;
      if (after && !w.signin && w.me?.customer_id && tokenSubject(after) === w.me.customer_id) {
        w.watchExpiry(after); // the same customer's fresh token: the client takes it at its next refresh
        return;
      }
    }
    this.restart();
  }

  restart() {
    this.widget?.destroy();
    const root = this.shadowRoot ?? this.attachShadow({ mode: "open" });
    root.innerHTML = TEMPLATE;
    this.widget = new BookingWidget(this, root, this.options());
    this.widget.run();
  }
}

if (!customElements.get("realtime-booking")) customElements.define("realtime-booking", RealtimeBookingElement);
