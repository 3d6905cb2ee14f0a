// Offline as the browser reports it (offline.js, http.js, requests.js): the state follows the
// window's offline/online events at once, requests made offline reject with OFFLINE, network
// failures with NETWORK_ERROR in plain words, and `whenOnline` bookings wait and go out once,
// with one idempotency key.
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { RealtimeError } from "../../realtime/static/realtime.js";
import { makeClient, slot, goLive, flush } from "./helpers.mjs";

const RAW = /fetch|TypeError|ERR_/i;

// A fetch answering from `handler(url, init)` ({status, body}, or a thrown error), recording calls.
function fakeFetch(handler = () => ({ status: 200, body: {} })) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ path: new URL(url).pathname, init, key: init.headers["idempotency-key"], body: init.body });
    const { status, body } = await handler(url, init, calls.length);
    return { ok: status < 400, status, statusText: "", json: async () => body };
  };
  return { fetch, calls };
}

function reconnectDelay(clock) {
  let best = null;
  for (const tm of clock.timers.values()) if (tm.fn.toString().includes("_open")) best = tm.at - clock.t;
  return best;
}

function goOffline(t) {
  t.navigator.onLine = false;
  t.window.dispatch("offline");
}

function goOnline(t) {
  t.navigator.onLine = true;
  t.window.dispatch("online");
}

const booked = (key) => ({ status: 201, body: { booking: { id: "b1", slot_id: "s1", quantity: 1, status: "confirmed", key }, slot: slot("s1", 2, { booked: 1, available: 3 }) } });

describe("the browser's offline and online events", () => {
  test("offline while live: state offline at once (no ping wait), the socket closed; online: reconnecting, then live", () => {
    const t = makeClient();
    t.client.subscribe("service:svc");
    const ws = goLive(t.WS);
    goOffline(t);
    assert.equal(t.client.state, "offline");
    assert.deepEqual(ws.closedWith, { code: 4000, reason: "offline" });
    assert.equal(t.client.channels.get("service:svc").status, "pending");
    t.clock.advance(20000); // no attempt while the browser says offline (only a rare probe)
    assert.equal(t.WS.sockets.length, 1);
    goOnline(t);
    assert.equal(t.client.state, "reconnecting");
    t.clock.advance(reconnectDelay(t.clock));
    goLive(t.WS);
    assert.deepEqual(t.states, ["reconnecting", "live", "offline", "reconnecting", "live"]);
  });

  test("a long time offline stays offline: the rare probes do not flicker to reconnecting", () => {
    const t = makeClient();
    t.client.subscribe("service:svc");
    goLive(t.WS);
    goOffline(t);
    for (let i = 0; i < 4; i++) {
      t.clock.advance(31000);
      t.WS.latest().serverClose(1006); // the probe fails: no network
    }
    assert.ok(t.WS.sockets.length >= 4, "it still probes");
    assert.deepEqual(t.states, ["reconnecting", "live", "offline"]);
    goOnline(t);
    t.clock.advance(reconnectDelay(t.clock));
    goLive(t.WS);
    assert.deepEqual(t.states, ["reconnecting", "live", "offline", "reconnecting", "live"]);
  });

  test("offline while carried by Server-Sent Events closes the stream too", () => {
    const t = makeClient({ sse: true, sseAfter: 0 });
    t.client.subscribe("service:svc");
    t.WS.latest().serverClose(1006);
    const es = t.ES.latest();
    es.serverOpen();
    es.serverSubscribed({ "service:svc": [slot("s1", 1)] });
    assert.equal(t.client.transport + " " + t.client.state, "sse live");
    goOffline(t);
    assert.equal(t.client.state, "offline");
    assert.ok(es.closed);
    goOnline(t);
    assert.equal(t.client.state, "reconnecting");
  });

  test("a request in flight when the network goes rejects with OFFLINE, outcome unknown", async () => {
    const t = makeClient();
    t.client.subscribe("service:svc");
    goLive(t.WS);
    const p = t.client.hold("s1");
    assert.equal(t.WS.latest().sentOf("hold").length, 1);
    goOffline(t);
    await assert.rejects(p, (e) => e instanceof RealtimeError && e.code === "OFFLINE" && e.outcome === "unknown" && !RAW.test(e.message));
  });
});

describe("requests while offline", () => {
  test("book, confirm, hold, release, cancel and every read reject with OFFLINE without touching the network", async () => {
    const { fetch, calls } = fakeFetch();
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    t.client.subscribe("service:svc");
    goLive(t.WS);
    goOffline(t);
    const attempts = {
      book: () => t.client.book("s1"),
      confirm: () => t.client.confirm({ id: "h1", slot_id: "s1" }),
      hold: () => t.client.hold("s1"),
      release: () => t.client.release("h1"),
      cancel: () => t.client.cancel("b1"),
      getAvailability: () => t.client.getAvailability({ service: "svc" }),
      getVendor: () => t.client.getVendor("v"),
      getService: () => t.client.getService("svc"),
      getDemo: () => t.client.getDemo(),
    };
    for (const [name, attempt] of Object.entries(attempts)) {
      await assert.rejects(attempt(), (e) => {
        assert.ok(e instanceof RealtimeError, name);
        assert.equal(e.code, "OFFLINE", name);
        assert.equal(e.message, "You are offline, so this was not sent. Try again when you are back online.", name);
        return true;
      });
    }
    assert.deepEqual(calls, []);
    assert.equal(t.WS.sockets.length, 1);
  });

  test("over the socket too (no HTTP configured): OFFLINE at once, not a TIMEOUT later", async () => {
    const t = makeClient(); // fetch: null
    t.client.subscribe("service:svc");
    goLive(t.WS);
    goOffline(t);
    await assert.rejects(t.client.book("s1"), { code: "OFFLINE" });
    await assert.rejects(t.client.cancel("b1"), { code: "OFFLINE" });
  });

  test("online but unreachable: NETWORK_ERROR in plain words, the browser's text only on `cause`", async () => {
    const { fetch } = fakeFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    for (const p of [t.client.book("s1"), t.client.hold("s1"), t.client.release({ id: "h1" }), t.client.getDemo()]) {
      await assert.rejects(p, (e) => e.code === "NETWORK_ERROR" && !RAW.test(e.message) && e.cause.message === "Failed to fetch");
    }
  });

  test("a fetch that fails because the network just went: OFFLINE, outcome unknown for a write", async () => {
    let t = null;
    const { fetch } = fakeFetch(() => {
      t.navigator.onLine = false;
      throw new TypeError("Failed to fetch");
    });
    t = makeClient({ fetch, httpUrl: "http://example.test" });
    await assert.rejects(t.client.book("s1"), (e) => e.code === "OFFLINE" && e.outcome === "unknown" && !RAW.test(e.message));
  });

  test("an HTTP request with no answer within requestTimeout rejects with TIMEOUT and is aborted", async () => {
    let signal = null;
    const { fetch } = fakeFetch((url, init) => {
      signal = init.signal;
      return new Promise(() => {});
    });
    const t = makeClient({ fetch, httpUrl: "http://example.test", requestTimeout: 5000 });
    const p = t.client.getVendor("v");
    await flush();
    t.clock.advance(5000);
    await assert.rejects(p, { code: "TIMEOUT", message: "The server did not answer in time." });
    assert.equal(signal.aborted, true);
  });
});

describe("whenOnline", () => {
  test("a booking made offline waits, then goes out once when the network is back, with its Idempotency-Key", async () => {
    const { fetch, calls } = fakeFetch((url, init) => booked(init.headers["idempotency-key"]));
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    t.client.subscribe("service:svc");
    goLive(t.WS);
    goOffline(t);
    const waiting = [];
    t.client.on("waiting", ({ code }) => waiting.push(code));
    let settled = null;
    const p = t.client.book("s1", { quantity: 2, idempotencyKey: "k-1", whenOnline: true }).then((r) => (settled = r));
    await flush();
    t.clock.advance(60000);
    await flush();
    assert.equal(settled, null, "pending while offline");
    assert.deepEqual(calls, []);
    assert.ok(waiting.length >= 1 && waiting.every((c) => c === "OFFLINE"), "told it waits, and why");
    goOnline(t);
    await p;
    assert.equal(calls.length, 1);
    assert.deepEqual([calls[0].path, calls[0].key, JSON.parse(calls[0].body)], ["/api/bookings", "k-1", { slot_id: "s1", quantity: 2 }]);
    assert.equal(settled.booking.id, "b1");
  });

  test("network failures are retried with the same key and body; the result of the one that got through resolves it", async () => {
    const { fetch, calls } = fakeFetch((url, init, n) => {
      if (n < 3) throw new TypeError("Failed to fetch");
      return booked(init.headers["idempotency-key"]);
    });
    const t = makeClient({ fetch, httpUrl: "http://example.test", baseDelay: 100 });
    const waiting = [];
    t.client.on("waiting", ({ code }) => waiting.push(code));
    const p = t.client.book("s1", { customerId: "c", whenOnline: true });
    for (let i = 0; i < 10 && calls.length < 3; i++) {
      await flush();
      t.clock.advance(5000);
    }
    const { booking } = await p;
    assert.equal(booking.id, "b1");
    assert.equal(calls.length, 3);
    assert.equal(new Set(calls.map((c) => c.key)).size, 1);
    assert.equal(new Set(calls.map((c) => c.body)).size, 1);
    assert.deepEqual(waiting, ["NETWORK_ERROR", "NETWORK_ERROR"]);
  });

  test("the client getting live again sends a waiting booking at once (no online event needed)", async () => {
    let down = true;
    const { fetch, calls } = fakeFetch((url, init) => {
      if (down) throw new TypeError("Failed to fetch");
      return booked(init.headers["idempotency-key"]);
    });
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    t.client.subscribe("service:svc");
    const waiting = [];
    t.client.on("waiting", ({ code }) => waiting.push(code));
    const p = t.client.book("s1", { whenOnline: true });
    for (let i = 0; i < 5 && !waiting.length; i++) await flush();
    assert.deepEqual(waiting, ["NETWORK_ERROR"]);
    down = false;
    goLive(t.WS); // before any backoff timer fires
    assert.equal((await p).booking.id, "b1");
    assert.equal(calls.length, 2);
  });

  test("what the server refuses is not retried: BOOKING_CONFLICT rejects at once", async () => {
    const { fetch, calls } = fakeFetch(() => ({ status: 409, body: { error: { code: "BOOKING_CONFLICT", message: "taken", slot: slot("s1", 3, { available: 0 }), alternatives: [] } } }));
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    await assert.rejects(t.client.book("s1", { whenOnline: true }), { code: "BOOKING_CONFLICT" });
    assert.equal(calls.length, 1);
  });

  test("close() rejects a waiting booking with CLIENT_CLOSED; nothing is sent after", async () => {
    const { fetch, calls } = fakeFetch();
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    t.client.subscribe("service:svc");
    goOffline(t);
    const p = t.client.book("s1", { whenOnline: true });
    await flush();
    t.client.close();
    await assert.rejects(p, { code: "CLIENT_CLOSED" });
    goOnline(t);
    t.clock.advance(60000);
    await flush();
    assert.deepEqual(calls, []);
  });
});

describe("holds", () => {
  test("confirm(hold) books the hold's own quantity; release(hold) deletes it over HTTP", async () => {
    const { fetch, calls } = fakeFetch((url) => (url.endsWith("/api/bookings") ? booked() : { status: 200, body: { slot: slot("s1", 3) } }));
    const t = makeClient({ fetch, httpUrl: "http://example.test" });
    await t.client.confirm({ id: "h1", slot_id: "s1", quantity: 3 }, { customerId: "c" });
    await t.client.release({ id: "h 2", slot_id: "s1" });
    assert.deepEqual(JSON.parse(calls[0].body), { slot_id: "s1", hold_id: "h1", customer_id: "c" });
    assert.deepEqual([calls[1].path, calls[1].init.method], ["/api/holds/h%202", "DELETE"]);
    assert.throws(() => t.client.confirm({ id: "h1" }), TypeError);
  });
});
