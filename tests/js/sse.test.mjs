// The fallback to Server-Sent Events (realtime.js with a fake WebSocket, a fake EventSource
// and a recording fetch): when it switches, what it streams, how it resumes, and how it comes
// back to the WebSocket. `node --test tests/js/`.
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { FakeClock, makeClient, slot, goLive, flush, jwt } from "./helpers.mjs";

// The pending reconnect timer's delay (the heartbeat tick also has a timer: pick the other).
function reconnectDelay(clock) {
  let best = null;
  for (const tm of clock.timers.values()) if (tm.fn.toString().includes("_open")) best = tm.at - clock.t;
  return best;
}

// `n` WebSocket attempts that close without ever opening (a proxy that refuses them).
function failSockets(clock, WS, n) {
  for (let i = 0; i < n; i++) {
    WS.latest().serverClose(1006);
    clock.advance(reconnectDelay(clock));
  }
}

// A fetch that answers by path; records every call.
function routes(table) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const path = new URL(url).pathname;
    const answer = table[path] ?? { status: 200, body: {} };
    const { status, body } = typeof answer === "function" ? answer(url, init) : answer;
    return { ok: status < 400, status, statusText: "", json: async () => body };
  };
  return { fetch, calls };
}

// A client carried by SSE: three failed sockets, a fourth failing while the stream opens, and
// every channel's `subscribed` (a snapshot at `cursor`).
function onSse(options = {}, channels = { "service:svc": [slot("s1", 1)] }, cursor = "5@e") {
  const t = makeClient({ sse: true, ...options });
  const chans = Object.keys(channels).map((name) => t.client.subscribe(name));
  failSockets(t.clock, t.WS, 3);
  t.WS.latest().serverClose(1006);
  const es = t.ES.latest();
  es.serverOpen();
  es.serverSubscribed(channels, cursor);
  return { ...t, es, chans };
}

describe("choosing the transport", () => {
  test("three WebSocket attempts that never open: the next also opens one stream of every channel, which carries them once the socket fails", () => {
    const { client, clock, WS, ES, states, transports } = makeClient({ sse: true });
    const a = client.subscribe("service:a", { from: "2026-11-23T00:00:00Z", to: "2026-11-24T00:00:00Z" });
    client.subscribe("vendor:v", { from: "2026-11-20T00:00:00Z", to: "2026-11-30T00:00:00Z" });
    failSockets(clock, WS, 2);
    assert.equal(ES.sources.length, 0, "two failures are not enough");
    failSockets(clock, WS, 1);
    assert.equal(WS.sockets.length, 4, "the WebSocket is still tried");
    const es = ES.latest();
    assert.ok(es, "a stream is opened beside the fourth socket");
    const u = new URL(es.url);
    assert.equal(`${u.origin}${u.pathname}`, "http://example.test/sse");
    assert.deepEqual(u.searchParams.getAll("channel"), ["service:a", "vendor:v"]);
    assert.equal(u.searchParams.get("from"), "2026-11-20T00:00:00Z", "the earliest from");
    assert.equal(u.searchParams.get("to"), "2026-11-30T00:00:00Z", "the latest to");
    assert.equal(u.searchParams.get("since"), null, "no cursor yet: snapshots");
    es.serverOpen();
    assert.equal(client.transport, "websocket", "a socket attempt is in flight: it is preferred");
    WS.latest().serverClose(1006);
    assert.equal(client.transport, "sse");
    assert.deepEqual(transports, ["sse"]);
    assert.equal(client.state, "reconnecting", "not live before every channel is subscribed");
    es.serverEvent("subscribed", { type: "subscribed", channel: "service:a", cursor: "5@e", snapshot: { slots: [slot("s1", 1)] } });
    assert.equal(client.state, "reconnecting");
    es.serverEvent("subscribed", { type: "subscribed", channel: "vendor:v", cursor: "5@e", snapshot: { slots: [] } });
    assert.equal(client.state, "live");
    assert.equal(a.get("s1").version, 1);
    assert.equal(a.status, "subscribed");
    assert.deepEqual(states.filter((s, i) => s !== states[i - 1]), ["reconnecting", "live"]);
    clock.advance(60000);
    assert.equal(WS.sockets.length, 4, "no WebSocket attempts while the stream carries");
    assert.equal(es.closed, false);
  });

  test("one failed attempt does not switch: the next socket gets live and no stream is opened", () => {
    const { client, clock, WS, ES, transports } = makeClient({ sse: true });
    client.subscribe("service:svc");
    failSockets(clock, WS, 1);
    goLive(WS);
    assert.equal(client.state, "live");
    assert.equal(ES.sources.length, 0);
    assert.deepEqual(transports, []);
  });

  test("a server restart does not switch either: when both come back, the socket that gets live wins and the stream is closed", () => {
    const { client, clock, WS, ES, transports } = makeClient({ sse: true });
    const ch = client.subscribe("service:svc");
    goLive(WS, { "service:svc": [slot("s1", 1)] }, "5@e");
    WS.latest().serverClose(1001); // going away: the server restarts
    clock.advance(reconnectDelay(clock));
    failSockets(clock, WS, 3); // down for a while: three refused attempts
    const es = ES.latest();
    assert.ok(es, "the fourth attempt tries a stream too");
    assert.equal(es.params.get("since"), "5@e");
    es.serverOpen(); // the server is back: the stream opens first ...
    es.serverEvent("subscribed", { type: "subscribed", channel: "service:svc", cursor: "6@e", events: [] });
    assert.equal(client.transport, "websocket");
    goLive(WS); // ... and the socket gets live
    assert.equal(client.state, "live");
    assert.equal(client.transport, "websocket");
    assert.ok(es.closed, "the stream is closed");
    assert.deepEqual(transports, [], "the transport never changed");
    assert.equal(ch.status, "subscribed");
  });

  test("with sseFallback off, or without EventSource, no stream is ever opened", () => {
    for (const options of [{ sse: true, sseFallback: false }, { sse: false }]) {
      const { client, clock, WS, ES } = makeClient(options);
      client.subscribe("service:svc");
      failSockets(clock, WS, 8);
      assert.equal(ES.sources.length, 0);
      assert.equal(client.transport, "websocket");
      assert.equal(WS.sockets.length, 9);
    }
  });

  test("a stream that fails too (the server is down) leaves the next attempt to both, with backoff", async () => {
    const { client, clock, WS, ES } = makeClient({ sse: true });
    client.subscribe("service:svc");
    failSockets(clock, WS, 3);
    WS.latest().serverClose(1006);
    ES.latest().serverDrop(); // a network error before it ever opened
    await flush();
    assert.ok(ES.latest().closed, "the client takes the retry over from the browser");
    const delay = reconnectDelay(clock);
    assert.ok(delay > 0, "after a backoff");
    clock.advance(delay);
    assert.equal(WS.sockets.length, 5);
    assert.equal(ES.sources.length, 2);
    assert.equal(client.state, "reconnecting");
    assert.equal(client.transport, "websocket");
  });
});

describe("over SSE", () => {
  test("the app gets the same events as over the WebSocket; presence is not available", async () => {
    const t = makeClient({ sse: true });
    const ch = t.client.subscribe("service:svc");
    const got = [];
    for (const type of ["snapshot", "subscribed", "availability:updated", "conflict:detected"]) {
      t.client.on(type, (d) => got.push([type, d.channel, d.slot?.version ?? null]));
    }
    const messages = [];
    t.client.on("message", (m) => messages.push(m.type));
    const ws = goLive(t.WS, {}, "1@e");
    ch.presence = 4; // as the socket would have said
    ws.serverClose(1006);
    t.clock.advance(reconnectDelay(t.clock));
    failSockets(t.clock, t.WS, 3);
    t.WS.latest().serverClose(1006);
    const es = t.ES.latest();
    es.serverOpen();
    assert.equal(ch.presence, null, "no presence over SSE");
    got.length = 0;
    es.serverEvent("subscribed", { type: "subscribed", channel: "service:svc", cursor: "5@e", snapshot: { slots: [slot("s1", 1)] } });
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "6@e", reason: "booked", slot: slot("s1", 2, { available: 3 }) }, "6@e");
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "7@e", reason: "booked", slot: slot("s1", 2, { available: 3 }) }, "7@e");
    es.serverEvent("conflict:detected", { type: "conflict:detected", channel: "service:svc", cursor: "8@e", slot: slot("s1", 3, { available: 0 }), quantity: 4, alternatives: [slot("s2", 1)] }, "8@e");
    assert.deepEqual(got, [
      ["snapshot", "service:svc", null],
      ["subscribed", "service:svc", null],
      ["availability:updated", "service:svc", 2],
      ["conflict:detected", "service:svc", 3],
    ]);
    assert.equal(ch.get("s1").available, 0);
    assert.equal(ch.cursor, "8@e");
    assert.equal(t.client.state, "live");
    assert.equal(await ch.ready.then((d) => d.channel), "service:svc");
    assert.ok(messages.includes("conflict:detected"));
  });

  test("the stream resumes from the oldest of the socket's cursors; what a channel already had is not reported again", () => {
    const t = makeClient({ sse: true });
    const a = t.client.subscribe("service:a");
    const b = t.client.subscribe("service:b");
    const ws = goLive(t.WS, { "service:a": [slot("a1", 1)], "service:b": [slot("b1", 1)] }, "10@e");
    ws.serverSend({ type: "availability:updated", channel: "service:b", cursor: "12@e", reason: "booked", slot: slot("b1", 2) });
    ws.serverClose(1006);
    t.clock.advance(reconnectDelay(t.clock));
    failSockets(t.clock, t.WS, 3);
    const es = t.ES.latest();
    assert.equal(es.params.get("since"), "10@e", "the oldest cursor: nothing of either channel is missed");
    t.WS.latest().serverClose(1006);
    es.serverOpen();
    const conflicts = [];
    const updates = [];
    t.client.on("conflict:detected", (d) => conflicts.push(d.cursor));
    t.client.on("availability:updated", (d) => updates.push(d.cursor));
    es.serverEvent("subscribed", {
      type: "subscribed", channel: "service:a", cursor: "14@e",
      events: [{ type: "availability:updated", channel: "service:a", cursor: "13@e", reason: "booked", slot: slot("a1", 2) }],
    });
    es.serverEvent("subscribed", {
      type: "subscribed", channel: "service:b", cursor: "14@e",
      events: [
        { type: "conflict:detected", channel: "service:b", cursor: "11@e", slot: slot("b1", 1), quantity: 1, alternatives: [] },
        { type: "availability:updated", channel: "service:b", cursor: "12@e", reason: "booked", slot: slot("b1", 2) },
        { type: "conflict:detected", channel: "service:b", cursor: "13@e", slot: slot("b1", 2), quantity: 2, alternatives: [] },
      ],
    });
    assert.deepEqual(conflicts, ["13@e"], "the conflict at 11@e was had already");
    assert.deepEqual(updates, ["13@e"]);
    assert.equal(a.get("a1").version, 2);
    assert.equal(b.cursor, "14@e");
    assert.equal(t.client.state, "live");
  });

  test("no since when a channel has no cursor; every update id advances every channel's cursor", () => {
    const { client, es, chans } = onSse({}, { "service:a": [], "service:b": [] }, "5@e");
    const [a, b] = chans;
    assert.equal(es.params.get("since"), null);
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:a", cursor: "9@e", reason: "booked", slot: slot("a1", 2) }, "9@e");
    assert.equal(a.cursor, "9@e");
    assert.equal(b.cursor, "9@e", "the stream's position: b has every one of its events up to it");
    assert.equal(client.state, "live");
  });

  test("the browser's own reconnect: reconnecting, then live again from the resumed events, on the same EventSource", () => {
    const { client, es, ES, chans, states } = onSse();
    const [ch] = chans;
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "6@e", reason: "booked", slot: slot("s1", 2) }, "6@e");
    es.serverDrop();
    assert.equal(client.state, "reconnecting");
    assert.equal(ch.status, "pending");
    assert.equal(es.closed, false, "left to the browser, which resends Last-Event-ID");
    es.serverOpen();
    es.serverEvent("subscribed", {
      type: "subscribed", channel: "service:svc", cursor: "8@e",
      events: [
        { type: "availability:updated", channel: "service:svc", cursor: "7@e", reason: "booked", slot: slot("s1", 3) },
        { type: "availability:updated", channel: "service:svc", cursor: "8@e", reason: "cancelled", slot: slot("s1", 4) },
      ],
    });
    assert.equal(ch.get("s1").version, 4);
    assert.equal(client.state, "live");
    assert.equal(ES.sources.length, 1);
    assert.deepEqual(states.slice(-2), ["reconnecting", "live"]);
  });

  test("when the browser's first retry fails too, the client takes over with its own backoff and ?since=", async () => {
    const { client, clock, es, ES } = onSse();
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "6@e", reason: "booked", slot: slot("s1", 2) }, "6@e");
    es.serverDrop(); // the server went away: the browser retries once ...
    assert.equal(es.closed, false);
    es.serverDrop(); // ... in vain (still down)
    assert.ok(es.closed, "no more fixed-delay retries by the browser");
    await flush();
    const delay = reconnectDelay(clock);
    assert.ok(delay != null, "a jittered backoff instead");
    clock.advance(delay);
    const again = ES.latest();
    assert.notEqual(again, es);
    assert.equal(again.params.get("since"), "6@e");
    again.serverOpen();
    again.serverSubscribed({}, "6@e");
    assert.equal(client.state, "live");
  });

  test("a stream the server refused is opened again after a backoff, with ?since= its last cursor", async () => {
    const { fetch, calls } = routes({ "/sse": { status: 503, body: { error: { code: "NOT_READY", message: "shutting down" } } } });
    const { client, clock, es, ES, WS } = onSse({ fetch });
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "6@e", reason: "booked", slot: slot("s1", 2) }, "6@e");
    const errors = [];
    client.on("error", (e) => errors.push(e.code));
    es.serverRefuse();
    assert.equal(client.state, "reconnecting");
    await flush();
    await flush();
    assert.ok(calls.some((c) => new URL(c.url).pathname === "/sse"), "the client asked the server why");
    assert.deepEqual(errors, [], "a 503 is not the app's business");
    clock.advance(reconnectDelay(clock));
    const again = ES.latest();
    assert.notEqual(again, es);
    assert.equal(again.params.get("since"), "6@e");
    assert.equal(WS.sockets.length, 4, "still on SSE: no WebSocket attempt");
    again.serverOpen();
    again.serverSubscribed({}, "6@e");
    assert.equal(client.state, "live");
    assert.equal(client.transport, "sse");
  });

  test("a channel that does not exist refuses the whole stream: it is found and the others are streamed", async () => {
    const { fetch } = routes({
      "/sse": { status: 404, body: { error: { code: "UNKNOWN_CHANNEL", message: "channel: no such channel", field: "channel" } } },
      "/api/services/nope": { status: 404, body: { error: { code: "SERVICE_NOT_FOUND", message: "no" } } },
      "/api/services/svc": { status: 200, body: { id: "svc" } },
    });
    const { client, clock, WS, ES } = makeClient({ sse: true, fetch });
    client.subscribe("service:svc");
    const nope = client.subscribe("service:nope");
    failSockets(clock, WS, 3);
    WS.latest().serverClose(1006);
    ES.latest().serverRefuse(); // a 404 before the stream started
    await assert.rejects(nope.ready, { code: "UNKNOWN_CHANNEL" });
    await flush();
    assert.equal(nope.status, "error");
    const es = ES.latest();
    assert.equal(ES.sources.length, 2, "opened again at once");
    assert.equal(WS.sockets.length, 5, "beside a socket: the stream never carried yet");
    assert.deepEqual(es.params.getAll("channel"), ["service:svc"]);
    WS.latest().serverClose(1006);
    es.serverOpen();
    es.serverSubscribed();
    assert.equal(client.transport, "sse");
    assert.equal(client.state, "live");
  });

  test("book, hold and cancel go over HTTP; confirming a hold sends no quantity", async () => {
    const { fetch, calls } = routes({
      "/api/holds": { status: 201, body: { hold: { id: "h1", quantity: 3 }, slot: slot("s1", 2, { held: 3, available: 1 }) } },
      "/api/bookings": { status: 201, body: { booking: { id: "b1", quantity: 3 }, slot: slot("s1", 3, { booked: 3, available: 1 }) } },
      "/api/bookings/b1/cancel": { status: 200, body: { booking: { id: "b1" }, slot: slot("s1", 4) } },
    });
    const { client, chans } = onSse({ fetch });
    const { hold } = await client.hold("s1", { quantity: 3, ttlSeconds: 60 });
    const { booking } = await client.book("s1", { holdId: hold.id });
    await client.cancel(booking.id);
    const posts = calls.filter((c) => c.init.method === "POST").map((c) => [new URL(c.url).pathname, JSON.parse(c.init.body)]);
    assert.deepEqual(posts, [
      ["/api/holds", { slot_id: "s1", quantity: 3, ttl_seconds: 60 }],
      ["/api/bookings", { slot_id: "s1", hold_id: "h1" }],
      ["/api/bookings/b1/cancel", {}],
    ]);
    assert.ok(calls[1].init.headers["idempotency-key"]);
    assert.equal(chans[0].get("s1").version, 4, "each answer's slot updates the local state");
  });

  test("subscribing another channel opens a stream of both; the old one carries on until the new one is live", async () => {
    const { client, es, ES, states } = onSse({}, { "service:a": [] }, "5@e");
    const b = client.subscribe("service:b", { since: "4@e" });
    await flush();
    const next = ES.latest();
    assert.notEqual(next, es);
    assert.deepEqual(next.params.getAll("channel"), ["service:a", "service:b"]);
    assert.equal(next.params.get("since"), "4@e");
    assert.equal(es.closed, false);
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:a", cursor: "6@e", reason: "booked", slot: slot("a1", 2) }, "6@e");
    assert.equal(client.channels.get("service:a").get("a1").version, 2, "the old stream still delivers");
    next.serverOpen();
    next.serverSubscribed({}, "7@e");
    assert.ok(es.closed, "closed once the new one is live");
    assert.equal(b.status, "subscribed");
    assert.equal(client.state, "live");
    assert.equal(states.at(-1), "live");
    assert.equal(states.filter((s) => s === "reconnecting").length, 1, "live throughout the swap");
    client.unsubscribe("service:b");
    await flush();
    assert.deepEqual(ES.latest().params.getAll("channel"), ["service:a"]);
  });

  test("every wsRetryInterval a WebSocket is tried beside the stream: a failed one changes nothing, a live one takes over", () => {
    const { client, clock, WS, es, chans, transports, states } = onSse({ wsRetryInterval: 60000 });
    const sockets = WS.sockets.length;
    clock.advance(59000);
    assert.equal(WS.sockets.length, sockets);
    clock.advance(5000);
    assert.equal(WS.sockets.length, sockets + 1, "tried again after a minute");
    WS.latest().serverClose(1006);
    assert.equal(client.state, "live");
    assert.equal(client.transport, "sse");
    assert.equal(es.closed, false);
    clock.advance(65000);
    assert.equal(WS.sockets.length, sockets + 2);
    es.serverEvent("availability:updated", { type: "availability:updated", channel: "service:svc", cursor: "9@e", reason: "booked", slot: slot("s1", 2) }, "9@e");
    const ws = WS.latest();
    ws.serverOpen();
    const sub = ws.last("subscribe");
    assert.equal(sub.since, "9@e", "the socket resumes from the stream's cursor");
    assert.equal(chans[0].status, "subscribed", "still carried by the stream meanwhile");
    assert.equal(es.closed, false);
    ws.serverSend({ type: "subscribed", id: sub.id, channel: "service:svc", cursor: "9@e", events: [] });
    assert.ok(es.closed);
    assert.equal(client.transport, "websocket");
    assert.deepEqual(transports, ["sse", "websocket"]);
    assert.equal(states.at(-1), "live");
    assert.equal(states.filter((s) => s === "live").length, 1, "no gap in between");
  });

  test("the token goes on the stream's URL; after a refresh, the browser's reconnect is replaced by one with the fresh token", async () => {
    const clock = new FakeClock();
    let n = 0;
    const getToken = async () => jwt({ sub: "c1", n: ++n, exp: Math.floor(clock.t / 1000) + 120 });
    const t = makeClient({ sse: true, clock, getToken, refreshMargin: 60000 });
    t.client.subscribe("service:svc");
    for (let i = 0; i < 3; i++) {
      await flush();
      t.WS.latest().serverClose(1006);
      t.clock.advance(reconnectDelay(t.clock));
    }
    await flush();
    t.WS.latest().serverClose(1006);
    const es = t.ES.latest();
    assert.equal(es.params.get("token"), decodeURIComponent(t.WS.latest().url.split("token=")[1]));
    es.serverOpen();
    es.serverSubscribed();
    assert.equal(t.client.transport, "sse");
    clock.advance(70000); // past the refresh point
    await flush();
    es.serverDrop();
    assert.ok(es.closed, "not reconnected by the browser with the old token");
    await flush();
    const again = t.ES.latest();
    assert.notEqual(again, es);
    assert.notEqual(again.params.get("token"), es.params.get("token"));
    assert.equal(again.params.get("since"), "5@e");
  });

  test("coming back online reopens the stream (it may have died silently); close() closes it", () => {
    const { client, clock, es, ES, window } = onSse();
    window.dispatch("online");
    assert.ok(es.closed);
    assert.equal(client.state, "reconnecting");
    clock.advance(reconnectDelay(clock));
    const again = ES.latest();
    assert.notEqual(again, es);
    assert.equal(again.params.get("since"), "5@e");
    client.close();
    assert.ok(again.closed);
    assert.equal(client.state, "offline");
    clock.advance(600000);
    assert.equal(ES.sources.length, 2);
  });
});
