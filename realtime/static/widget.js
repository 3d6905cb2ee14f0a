// The demo booking widget served at GET /. Plain DOM, no framework: one button per slot,
// updated in place when the slot changes. Everything it asks the server goes through the
// client library (realtime.js): HTTP reads, the socket, bookings.
import { RealtimeClient } from "./realtime.js";

const $ = (id) => document.getElementById(id);
const els = {
  app: $("rt-app"),
  vendor: $("rt-vendor"),
  title: $("rt-title"),
  intro: $("rt-intro"),
  conn: document.querySelector("[data-connection]"),
  connText: document.querySelector("[data-connection] .rt-conn-text"),
  presence: document.querySelector("[data-presence]"),
  presenceLabel: $("rt-presence-label"),
  daybar: $("rt-daybar"),
  days: $("rt-days"),
  notice: $("rt-notice"),
  noticeTitle: $("rt-notice-title"),
  noticeText: $("rt-notice-text"),
  alts: $("rt-alts"),
  noticeClose: $("rt-notice-close"),
  mine: $("rt-mine"),
  mineList: $("rt-mine-list"),
  announce: $("rt-announce"),
  alert: $("rt-alert"),
};

const params = new URLSearchParams(location.search);
const DAY = 24 * 3600 * 1000;
const fmtDay = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });
const fmtDayLong = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const fmtTime = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayKeyFmt = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit" });

const view = {
  client: null,
  channel: null,
  services: new Map(), // id -> service
  multiService: false,
  buttons: new Map(), // slot id -> button
  pending: new Map(), // slot id -> units in flight from this page
  mine: new Map(), // slot id -> [booking]
  known: new Map(), // slot id -> slot, for alternatives outside the grid
  from: null,
  to: null,
};

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
const CUSTOMER = customerId();

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

// --- announcements ---------------------------------------------------------------------------

function say(text, { urgent = false } = {}) {
  const region = urgent ? els.alert : els.announce;
  region.textContent = "";
  // A fresh text node so that repeated messages are announced again.
  setTimeout(() => {
    region.textContent = text;
  }, 30);
}

// --- slot presentation -------------------------------------------------------------------------

function slotOf(id) {
  return view.channel?.get(id) ?? view.known.get(String(id));
}

function stateOf(slot) {
  const id = String(slot.id);
  if (view.pending.has(id)) return "pending";
  if (view.mine.has(id)) return "mine";
  return Number(slot.available) > 0 ? "available" : "full";
}

function serviceName(slot) {
  return view.services.get(String(slot.service_id))?.name ?? "";
}

function when(slot) {
  const start = new Date(slot.starts_at);
  const days = durationDays(slot);
  if (days) return `${fmtDay.format(start)}, ${days} day${days > 1 ? "s" : ""}`;
  return `${fmtDay.format(start)}, ${fmtTime.format(start)}`;
}

function durationDays(slot) {
  const hours = (Date.parse(slot.ends_at) - Date.parse(slot.starts_at)) / 3600000;
  return hours >= 20 ? Math.round(hours / 24) : 0;
}

// "10:00" for an appointment, "3 days" for a rental that starts on that day.
function shortWhen(slot) {
  const days = durationDays(slot);
  if (days) return days === 1 ? "1 day" : `${days} days`;
  return fmtTime.format(new Date(slot.starts_at));
}

function label(slot, state) {
  const start = new Date(slot.starts_at);
  const end = new Date(slot.ends_at);
  const svc = view.multiService ? `${serviceName(slot)}, ` : "";
  const days = durationDays(slot);
  const span = days
    ? `${days} day${days > 1 ? "s" : ""} from ${fmtDayLong.format(start)} ${fmtTime.format(start)} to ${fmtDayLong.format(end)}`
    : `${fmtDayLong.format(start)}, ${fmtTime.format(start)} to ${fmtTime.format(end)}`;
  const what = {
    available: `${slot.available} of ${slot.capacity} free. Book`,
    pending: "booking in progress",
    mine: "booked by you",
    full: "full",
  }[state];
  return `${svc}${span}: ${what}`;
}

function metaText(slot, state) {
  if (state === "pending") return "Booking…";
  if (state === "mine") return "Yours ✓";
  if (state === "full") return "Full";
  const n = Number(slot.available);
  if (Number(slot.capacity) === 1) return "Free";
  return n === 1 ? "Last one" : `${n} left`;
}

function makeButton(slot) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "rt-slot";
  b.dataset.slotId = slot.id;
  b.innerHTML = '<span class="rt-time"></span><span class="rt-meta"></span>';
  b.querySelector(".rt-time").textContent = shortWhen(slot);
  b.addEventListener("click", () => onSlotClick(String(slot.id)));
  paint(b, slot);
  return b;
}

function paint(b, slot, { flash = false } = {}) {
  const state = stateOf(slot);
  const available = String(Number(slot.available));
  const prevAvail = b.dataset.available;
  if (b.dataset.state !== state) b.dataset.state = state;
  if (prevAvail !== available) b.dataset.available = available;
  const low = state === "available" && Number(slot.available) === 1 && Number(slot.capacity) > 1;
  b.classList.toggle("rt-low", low);
  b.querySelector(".rt-meta").textContent = metaText(slot, state);
  b.setAttribute("aria-label", label(slot, state));
  b.setAttribute("aria-disabled", state === "full" || state === "pending" ? "true" : "false");
  if (flash && prevAvail !== undefined && prevAvail !== available) {
    b.classList.remove("rt-flash");
    void b.offsetWidth; // restart the animation
    b.classList.add("rt-flash");
  }
}

function repaint(id, opts) {
  const slot = slotOf(id);
  const b = view.buttons.get(String(id));
  if (slot && b) paint(b, slot, opts);
  if (slot) updateDayCount(slot);
}

// Screen readers hear when a time is taken or frees up (batched, at most one message a second).
const changes = [];
let changeTimer = null;

function noteChange(slot) {
  const b = view.buttons.get(String(slot.id));
  if (!b) return;
  const before = b.dataset.state;
  const after = stateOf(slot);
  if (before === after || before === "pending" || before === "mine" || after === "pending" || after === "mine") return;
  if (after === "full") changes.push(`${when(slot)} was just taken`);
  else if (before === "full") changes.push(`${when(slot)} is free again`);
  else return;
  if (changeTimer) return;
  changeTimer = setTimeout(() => {
    changeTimer = null;
    const list = changes.splice(0);
    say(list.length > 3 ? `${list.length} times changed availability.` : `${list.join(". ")}.`);
  }, 1000);
}

function dayKey(ms) {
  return dayKeyFmt.format(new Date(ms));
}

function renderAll() {
  const focused = document.activeElement?.dataset?.slotId;
  renderDays();
  if (focused) view.buttons.get(focused)?.focus({ preventScroll: true });
}

function renderDays() {
  const slots = view.channel.list().filter((s) => view.channel.inWindow(s));
  view.buttons.clear();
  els.days.textContent = "";
  els.daybar.textContent = "";
  const byDay = new Map();
  for (let t = view.from; t < view.to; t += DAY) byDay.set(dayKey(t), { date: new Date(t), slots: [] });
  for (const s of slots) {
    const k = dayKey(Date.parse(s.starts_at));
    if (!byDay.has(k)) byDay.set(k, { date: new Date(s.starts_at), slots: [] });
    byDay.get(k).slots.push(s);
  }
  const frag = document.createDocumentFragment();
  const bar = document.createDocumentFragment();
  for (const [k, day] of byDay) {
    const sec = document.createElement("section");
    sec.className = "rt-day";
    sec.id = `day-${k}`;
    sec.dataset.day = k;
    const h = document.createElement("h2");
    h.id = `day-${k}-h`;
    h.innerHTML = '<span class="rt-dname"></span><span class="rt-dcount"></span>';
    h.querySelector(".rt-dname").textContent = fmtDayLong.format(day.date);
    sec.setAttribute("aria-labelledby", h.id);
    sec.appendChild(h);
    if (!day.slots.length) {
      const p = document.createElement("p");
      p.className = "rt-none";
      p.textContent = "No times on this day.";
      sec.appendChild(p);
    }
    // One row per service (in the vendor's order), so a vendor's week reads like a timetable.
    const groups = new Map();
    for (const id of view.services.keys()) groups.set(id, []);
    for (const s of day.slots) {
      const key = String(s.service_id);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(s);
    }
    for (const [svcId, list] of groups) {
      if (!list.length) continue;
      const wrap = document.createElement("div");
      wrap.className = "rt-svcgroup";
      if (view.multiService) {
        const h3 = document.createElement("h3");
        h3.textContent = view.services.get(svcId)?.name ?? "";
        wrap.appendChild(h3);
      }
      const grid = document.createElement("div");
      grid.className = "rt-grid";
      for (const s of list) {
        const b = makeButton(s);
        view.buttons.set(String(s.id), b);
        grid.appendChild(b);
      }
      wrap.appendChild(grid);
      sec.appendChild(wrap);
    }
    frag.appendChild(sec);

    const chip = document.createElement("a");
    chip.className = "rt-daychip";
    chip.href = `#day-${k}`;
    chip.dataset.day = k;
    chip.innerHTML = '<span class="rt-cw"></span><span class="rt-cd"></span><span class="rt-cf"></span>';
    chip.querySelector(".rt-cw").textContent = new Intl.DateTimeFormat(undefined, { weekday: "short" }).format(day.date);
    chip.querySelector(".rt-cd").textContent = String(day.date.getDate());
    chip.addEventListener("click", (ev) => {
      ev.preventDefault();
      sec.scrollIntoView({ behavior: "smooth", block: "start" });
      sec.querySelector("button:not([aria-disabled='true'])")?.focus({ preventScroll: true });
    });
    bar.appendChild(chip);
  }
  els.days.appendChild(frag);
  els.daybar.appendChild(bar);
  for (const k of byDay.keys()) updateDayCountByKey(k);
}

function updateDayCount(slot) {
  updateDayCountByKey(dayKey(Date.parse(slot.starts_at)));
}

function updateDayCountByKey(k) {
  const sec = document.getElementById(`day-${k}`);
  if (!sec) return;
  let free = 0;
  let total = 0;
  for (const b of sec.querySelectorAll("[data-slot-id]")) {
    total++;
    if (b.dataset.state === "available") free++;
  }
  const text = total === 0 ? "" : free === 0 ? "fully booked" : `${free} free`;
  sec.querySelector(".rt-dcount").textContent = text;
  const chip = els.daybar.querySelector(`[data-day="${k}"]`);
  if (chip) {
    chip.querySelector(".rt-cf").textContent = total === 0 ? "–" : String(free);
    chip.classList.toggle("rt-chip-full", total > 0 && free === 0);
    chip.setAttribute("aria-label", `${fmtDayLong.format(new Date(`${k}T12:00:00`))}: ${text || "no times"}`);
  }
}

// --- booking -------------------------------------------------------------------------------------

function onSlotClick(id) {
  const slot = slotOf(id);
  if (!slot) return;
  const state = stateOf(slot);
  if (state === "available") return book(id);
  if (state === "mine") {
    const btn = els.mineList.querySelector(`[data-cancel-slot="${CSS.escape(id)}"]`);
    if (btn) {
      btn.focus();
      btn.closest("li")?.classList.add("rt-attn");
      setTimeout(() => btn.closest("li")?.classList.remove("rt-attn"), 1200);
    }
    return;
  }
  if (state === "full") {
    showAlternatives(slot, nearbyFree(slot), {
      title: "This time is full.",
      text: "These are the nearest free times:",
    });
  }
}

async function book(id) {
  const slot = slotOf(id);
  view.pending.set(id, (view.pending.get(id) ?? 0) + 1);
  hideNotice();
  repaint(id);
  say(`Booking ${slot ? when(slot) : "this time"}…`);
  try {
    const res = await view.client.book(id, { customerId: CUSTOMER });
    done(id);
    if (res?.slot) view.known.set(String(res.slot.id), res.slot);
    const list = view.mine.get(id) ?? [];
    list.push(res.booking);
    view.mine.set(id, list);
    repaint(id);
    renderMine();
    say(`Booked: ${slot ? when(slot) : "your time"}. It's yours.`);
  } catch (err) {
    done(id);
    if (err?.slot) view.known.set(String(err.slot.id), err.slot);
    repaint(id, { flash: true });
    const now = slotOf(id) ?? slot;
    if (err?.code === "BOOKING_CONFLICT") {
      const gone = !now || Number(now.available) <= 0;
      const exclusive = now && view.services.get(String(now.service_id))?.exclusive;
      showAlternatives(now, err.alternatives ?? [], gone
        ? {
            title: "Someone else just took it.",
            text: `${now ? when(now) : "That time"} was booked a moment before you. Nearest free times:`,
            urgent: true,
          }
        : {
            title: "That time can't be booked.",
            text: exclusive
              ? `${when(now)} overlaps another booking of ${serviceName(now)}. Free instead:`
              : `${err.message || "Not enough left"}. Free instead:`,
            urgent: true,
          });
    } else {
      showNotice("That didn't go through.", `${err?.message || "Something went wrong"}. Please try again.`, []);
      say(`Booking failed: ${err?.message || "error"}`, { urgent: true });
    }
  }
}

function done(id) {
  const n = (view.pending.get(id) ?? 1) - 1;
  if (n > 0) view.pending.set(id, n);
  else view.pending.delete(id);
}

async function cancelBooking(slotId, booking, li) {
  li.classList.add("rt-busy");
  try {
    const res = await view.client.cancel(booking.id);
    if (res?.slot) view.known.set(String(res.slot.id), res.slot);
    const list = (view.mine.get(slotId) ?? []).filter((b) => b.id !== booking.id);
    if (list.length) view.mine.set(slotId, list);
    else view.mine.delete(slotId);
    repaint(slotId);
    renderMine();
    const s = slotOf(slotId);
    say(`Cancelled: ${s ? when(s) : "your booking"}.`);
    view.buttons.get(slotId)?.focus();
  } catch (err) {
    li.classList.remove("rt-busy");
    say(`Could not cancel: ${err?.message || "error"}`, { urgent: true });
  }
}

function renderMine() {
  els.mineList.textContent = "";
  const entries = [];
  for (const [slotId, list] of view.mine) for (const b of list) entries.push([slotId, b]);
  entries.sort((a, b) => Date.parse(slotOf(a[0])?.starts_at ?? 0) - Date.parse(slotOf(b[0])?.starts_at ?? 0));
  for (const [slotId, booking] of entries) {
    const s = slotOf(slotId);
    const li = document.createElement("li");
    const span = document.createElement("span");
    span.className = "rt-mine-when";
    span.textContent = s ? `${when(s)}${view.multiService ? " · " + serviceName(s) : ""}` : "Booking";
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "rt-link";
    btn.dataset.cancelSlot = slotId;
    btn.textContent = "Cancel";
    btn.setAttribute("aria-label", `Cancel your booking${s ? " on " + when(s) : ""}`);
    btn.addEventListener("click", () => cancelBooking(slotId, booking, li));
    li.append(span, btn);
    els.mineList.appendChild(li);
  }
  els.mine.hidden = entries.length === 0;
}

// --- notices and alternatives ------------------------------------------------------------------

function nearbyFree(slot) {
  const t = Date.parse(slot.starts_at);
  return view.channel
    .list()
    .filter((s) => s.id !== slot.id && s.service_id === slot.service_id && stateOf(s) === "available")
    .sort((a, b) => Math.abs(Date.parse(a.starts_at) - t) - Math.abs(Date.parse(b.starts_at) - t))
    .slice(0, 5)
    .sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
}

function showNotice(title, text, alternatives, { kind = "warn" } = {}) {
  els.noticeTitle.textContent = title;
  els.noticeText.textContent = text;
  els.alts.textContent = "";
  alternatives = [...alternatives].sort((x, y) => Date.parse(x.starts_at) - Date.parse(y.starts_at));
  for (const alt of alternatives) {
    view.known.set(String(alt.id), view.channel.get(alt.id) ?? alt);
    const s = slotOf(alt.id);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "rt-alt";
    b.dataset.alternativeSlotId = alt.id;
    const svc = view.multiService || s.service_id !== alternatives[0]?.service_id ? serviceName(s) : "";
    b.innerHTML = '<span class="rt-alt-when"></span><span class="rt-alt-meta"></span>';
    b.querySelector(".rt-alt-when").textContent = when(s);
    b.querySelector(".rt-alt-meta").textContent = [svc, metaText(s, "available")].filter(Boolean).join(" · ");
    b.setAttribute("aria-label", `Book ${when(s)} instead`);
    b.addEventListener("click", () => {
      const id = String(alt.id);
      const cur = slotOf(id);
      if (cur && stateOf(cur) !== "available") {
        b.disabled = true;
        b.querySelector(".rt-alt-meta").textContent = "Taken";
        return;
      }
      book(id);
      view.buttons.get(id)?.scrollIntoView({ behavior: "smooth", block: "center" });
    });
    els.alts.appendChild(b);
  }
  if (!alternatives.length && kind === "conflict") {
    const p = document.createElement("p");
    p.className = "rt-none";
    p.textContent = "No other free times nearby, sorry.";
    els.alts.appendChild(p);
  }
  els.notice.dataset.kind = kind;
  els.notice.hidden = false;
}

function showAlternatives(slot, alternatives, { title, text, urgent = false }) {
  showNotice(title, text, alternatives, { kind: "conflict" });
  els.notice.dataset.forSlot = slot?.id ?? "";
  const n = alternatives.length;
  say(`${title} ${n ? `${n} other time${n > 1 ? "s are" : " is"} free nearby.` : "No other free times nearby."}`, { urgent });
  els.notice.scrollIntoView?.({ behavior: "smooth", block: "nearest" });
}

function hideNotice() {
  els.notice.hidden = true;
  delete els.notice.dataset.forSlot;
}

// --- connection and presence -------------------------------------------------------------------

const CONN_TITLE = {
  live: "Live: you see changes the moment they happen",
  reconnecting: "Reconnecting… times shown may be out of date for a moment",
  offline: "Offline: times shown may be out of date",
};

function showConnection(state) {
  els.conn.dataset.connection = state;
  els.connText.textContent = state;
  els.conn.title = CONN_TITLE[state] ?? state;
  els.app.dataset.connState = state;
}

function showPresence(count) {
  const n = Math.max(0, Number(count) || 0);
  els.presence.closest(".rt-presence")?.classList.remove("rt-unknown");
  els.presence.dataset.presence = String(n);
  els.presence.textContent = String(n);
  els.presenceLabel.textContent = n === 1 ? "person looking (you)" : n === 2 ? "people looking, you and 1 other" : "people looking";
}

// --- start ---------------------------------------------------------------------------------------

async function target() {
  if (params.get("service")) return { kind: "service", id: params.get("service") };
  if (params.get("vendor")) return { kind: "vendor", id: params.get("vendor") };
  const demo = await view.client.getDemo();
  return { kind: "vendor", id: demo.vendor_id };
}

function fail(message) {
  els.app.removeAttribute("aria-busy");
  els.vendor.textContent = "";
  els.title.textContent = "Nothing to book here";
  els.intro.textContent = message;
  els.days.textContent = "";
  els.daybar.textContent = "";
}

async function start() {
  const client = (view.client = new RealtimeClient({ url: wsUrl() }));
  let t;
  try {
    t = await target();
  } catch (err) {
    return fail(
      err.status === 404
        ? "There is no demo vendor on this server. Start it with --demo, or open this page with ?service=ID or ?vendor=ID."
        : `Could not load: ${err.message}`,
    );
  }
  try {
    if (t.kind === "vendor") {
      const vendor = await client.getVendor(t.id);
      for (const s of vendor.services ?? []) view.services.set(String(s.id), s);
      els.vendor.textContent = vendor.name;
      els.title.textContent = view.services.size === 1 ? [...view.services.values()][0].name : "Book a time";
      view.multiService = view.services.size > 1;
      document.title = `Book · ${vendor.name}`;
    } else {
      const service = await client.getService(t.id);
      view.services.set(String(service.id), service);
      els.title.textContent = service.name;
      document.title = `Book · ${service.name}`;
      client
        .getVendor(service.vendor_id)
        .then((v) => {
          els.vendor.textContent = v.name;
          document.title = `Book · ${service.name} · ${v.name}`;
        })
        .catch(() => {});
    }
  } catch (err) {
    return fail(err.status === 404 ? `No such ${t.kind}: ${t.id}` : `Could not load: ${err.message}`);
  }

  const now = Date.now();
  view.from = now - (now % (3600 * 1000)); // from the start of this hour
  view.to = view.from + 7 * DAY;
  let avail;
  try {
    avail = await client.getAvailability({ [t.kind]: t.id, from: iso(view.from), to: iso(view.to) });
  } catch (err) {
    return fail(`Could not load availability: ${err.message}`);
  }

  client.on("state", ({ state, previous }) => {
    showConnection(state);
    if (state === "reconnecting" && previous === "live") say("Connection lost. Reconnecting…");
    if (state === "live" && previous === "reconnecting" && view.wasLive) say("Back online. Times are up to date.");
    if (state === "live") view.wasLive = true;
  });
  const channel = (view.channel = client.subscribe(avail.channel ?? `${t.kind}:${t.id}`, {
    since: avail.cursor,
    from: iso(view.from),
    to: iso(view.to),
    slots: avail.slots,
  }));
  renderAll();
  els.app.removeAttribute("aria-busy");
  showConnection(client.state);

  channel.on("snapshot", () => {
    // After a reconnect that needed a full snapshot: repaint in place when the same slots are
    // there (keeps focus and scroll), rebuild only when slots came or went.
    const list = channel.list().filter((s) => channel.inWindow(s));
    if (list.length === view.buttons.size && list.every((s) => view.buttons.has(String(s.id)))) {
      for (const s of list) {
        noteChange(s);
        repaint(String(s.id), { flash: true });
      }
    } else {
      renderAll();
    }
  });
  channel.on("availability:updated", ({ slot }) => {
    const id = String(slot.id);
    if (!view.buttons.has(id)) {
      if (channel.inWindow(slot)) renderAll(); // a new slot appeared
      return;
    }
    noteChange(slot);
    repaint(id, { flash: true });
  });
  channel.on("conflict:detected", ({ slot }) => {
    if (slot) repaint(String(slot.id));
  });
  channel.on("presence", ({ count }) => showPresence(count));

  els.noticeClose.addEventListener("click", hideNotice);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !els.notice.hidden) hideNotice();
  });
  window.realtimeWidget = view; // for debugging and tests
}

function wsUrl() {
  const u = new URL("/ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

start();
