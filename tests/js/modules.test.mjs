// The modules of static/realtime/ on their own: each small and loaded only through relative
// imports from the entry point, and the pieces the client is built from.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { Emitter } from "../../realtime/static/realtime/emitter.js";
import { RealtimeError, networkError, offlineError, timeoutError } from "../../realtime/static/realtime/errors.js";
import { compareCursors, isNewer, isoTime, ms } from "../../realtime/static/realtime/cursors.js";
import { httpFromWs } from "../../realtime/static/realtime/client.js";
import { Channel } from "../../realtime/static/realtime/channel.js";
import * as entry from "../../realtime/static/realtime.js";
import { slot } from "./helpers.mjs";

const STATIC = join(dirname(fileURLToPath(import.meta.url)), "../../realtime/static");
const MAX_LINES = 250;

describe("the module layout", () => {
  test("every module is small, imports only its siblings, and is reached from realtime.js", () => {
    const reached = new Set();
    const visit = (rel) => {
      if (reached.has(rel)) return;
      reached.add(rel);
      const text = readFileSync(join(STATIC, rel), "utf8");
      for (const [, spec] of text.matchAll(/^(?:import|export) [^;]*? from "([^"]+)";/gm)) {
        assert.match(spec, /^\.\.?\/[\w/.-]+\.js$/, `${rel} imports ${spec}: relative paths only (no build step)`);
        visit(normalize(join(dirname(rel), spec)));
      }
    };
    visit("realtime.js");
    const files = readdirSync(join(STATIC, "realtime")).filter((f) => f.endsWith(".js"));
    assert.ok(files.length >= 12);
    for (const f of files) {
      assert.ok(reached.has(join("realtime", f)), `realtime/${f} is not used`);
      const lines = readFileSync(join(STATIC, "realtime", f), "utf8").split("\n").length;
      assert.ok(lines <= MAX_LINES, `realtime/${f} has ${lines} lines (at most ${MAX_LINES})`);
    }
  });

  test("the entry point exports the public API and nothing else", () => {
    assert.deepEqual(Object.keys(entry).sort(), [
      "Channel", "RealtimeClient", "RealtimeError", "STATE", "TRANSPORT", "VERSION",
      "backoffDelay", "connect", "default", "isNewer", "tokenExpiry",
    ]);
    assert.equal(entry.default, entry.RealtimeClient);
    const methods = ["book", "confirm", "hold", "release", "cancel", "getAvailability", "getVendor", "getService", "getDemo", "resync", "subscribe", "unsubscribe", "getSlot", "connect", "close"];
    for (const m of methods) assert.equal(typeof entry.RealtimeClient.prototype[m], "function", m);
    // Mixed in as a class body defines them: not enumerable.
    assert.deepEqual(Object.keys(entry.RealtimeClient.prototype), []);
  });
});

describe("emitter.js", () => {
  test("on / off / once / '*', and a throwing listener does not stop the others", () => {
    const e = new Emitter();
    const got = [];
    const off = e.on("a", (d) => got.push(["a", d.n]));
    e.once("a", (d) => got.push(["once", d.n]));
    e.on("*", (d) => got.push(["*", d.type, d.n]));
    e.on("a", () => {
      throw new Error("listener bug");
    });
    const later = [];
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = (fn) => later.push(fn); // where the emitter rethrows a listener's error
    try {
      e._emit("a", { n: 1 });
      off();
      e._emit("a", { n: 2 });
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    assert.deepEqual(got, [["a", 1], ["once", 1], ["*", "a", 1], ["*", "a", 2]]);
    assert.equal(later.length, 2, "one rethrow per emit the buggy listener heard");
    for (const fn of later) assert.throws(fn, /listener bug/); // surfaced, later, not swallowed
  });
});

describe("errors.js", () => {
  test("the client's own errors carry a code and plain words; the browser's text stays on cause", () => {
    const cause = new TypeError("Failed to fetch");
    const offline = offlineError({ cause });
    assert.ok(offline instanceof RealtimeError && offline instanceof Error);
    assert.deepEqual([offline.name, offline.code, offline.outcome, offline.cause], ["RealtimeError", "OFFLINE", undefined, cause]);
    assert.equal(offlineError({ sent: true }).outcome, "unknown");
    assert.notEqual(offlineError({ sent: true }).message, offline.message);
    const net = networkError(cause);
    assert.equal(net.code, "NETWORK_ERROR");
    assert.doesNotMatch(net.message + offline.message + timeoutError().message, /fetch|TypeError/i);
    assert.equal(timeoutError().code, "TIMEOUT");
  });

  test("a RealtimeError keeps every field of the server's error object", () => {
    const body = { code: "BOOKING_CONFLICT", message: "taken", slot: slot("s", 2), alternatives: [] };
    const err = new RealtimeError(body);
    assert.deepEqual([err.code, err.message, err.slot.id, err.alternatives, err.error], ["BOOKING_CONFLICT", "taken", "s", [], body]);
    assert.deepEqual([new RealtimeError("boom").code, new RealtimeError("boom").message], ["ERROR", "boom"]);
  });
});

describe("cursors.js, client.js's URLs", () => {
  test("cursors order by position within one epoch, and not across epochs", () => {
    assert.ok(compareCursors("10@e", "9@e") > 0);
    assert.ok(compareCursors("009@e", "10@e") < 0);
    assert.equal(compareCursors("5@e", "5@e"), 0);
    assert.equal(compareCursors("5@a", "6@b"), null);
    assert.equal(compareCursors("x", "6@b"), null);
    assert.equal(isNewer(slot("a", 3), slot("a", 2)), true);
  });

  test("times: strings as given, Dates and epoch ms as ISO; ws URLs to their HTTP origin", () => {
    assert.equal(isoTime("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z");
    assert.equal(isoTime(0), "1970-01-01T00:00:00.000Z");
    assert.equal(ms("1970-01-01T00:00:01Z"), 1000);
    assert.equal(ms(null), null);
    assert.equal(httpFromWs("wss://h.example:8443/ws?x=1"), "https://h.example:8443");
    assert.equal(httpFromWs("ws://h/ws"), "http://h");
    assert.equal(httpFromWs("not a url"), null);
  });
});

describe("channel.js", () => {
  test("a channel keeps the newest version of each slot inside its window, ordered by start", () => {
    const ch = new Channel(null, "service:s", { from: "2026-11-23T00:00:00Z", to: "2026-11-24T00:00:00Z" });
    assert.equal(ch._apply(slot("b", 1, { starts_at: "2026-11-23T12:00:00Z", ends_at: "2026-11-23T13:00:00Z" })), true);
    assert.equal(ch._apply(slot("a", 2)), true);
    assert.equal(ch._apply(slot("a", 1)), false, "an older version changes nothing");
    assert.equal(ch._apply(slot("c", 1, { starts_at: "2026-11-25T10:00:00Z", ends_at: "2026-11-25T11:00:00Z" })), false, "outside the window");
    assert.deepEqual(ch.list().map((s) => [s.id, s.version]), [["a", 2], ["b", 1]]);
  });
});
