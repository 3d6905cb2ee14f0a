// The client library's HTTP reads (getAvailability, getVendor, getService, getDemo, getMe,
// getBooking) and HTTP's answer to a refused token, with a
// recording fetch: `node --test tests/js/`.
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { RealtimeError } from "../../realtime/static/realtime.js";
import { makeClient, slot } from "./helpers.mjs";

function recordingFetch(answer = { status: 200, body: {} }) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const { status, body } = typeof answer === "function" ? answer(url) : answer;
    return { ok: status < 400, status, statusText: "", json: async () => body };
  };
  return { fetch, calls };
}

describe("HTTP reads", () => {
  test("getAvailability of a service: a GET with the window, resolved with the server's JSON", async () => {
    const body = { channel: "service:s 1", cursor: "7@e", slots: [slot("a", 1)] };
    const { fetch, calls } = recordingFetch({ status: 200, body });
    const { client } = makeClient({ fetch, url: "ws://example.test:8123/ws" });
    const res = await client.getAvailability({ service: "s 1", from: "2030-01-01T00:00:00Z", to: "2030-01-08T00:00:00Z" });
    assert.deepEqual(res, body);
    const { url, init } = calls[0];
    const u = new URL(url);
    assert.equal(`${u.origin}${u.pathname}`, "http://example.test:8123/api/services/s%201/availability");
    assert.equal(u.searchParams.get("from"), "2030-01-01T00:00:00Z");
    assert.equal(u.searchParams.get("to"), "2030-01-08T00:00:00Z");
    assert.equal(init.method, "GET");
    assert.equal(init.body, undefined);
    assert.equal(init.headers.accept, "application/json");
    assert.equal(init.headers["content-type"], undefined);
  });

  test("getAvailability of a vendor takes Dates and milliseconds, and no window at all", async () => {
    const { fetch, calls } = recordingFetch();
    const { client } = makeClient({ fetch });
    await client.getAvailability({ vendor: "v", from: new Date(Date.UTC(2030, 0, 1)), to: Date.UTC(2030, 0, 2) });
    await client.getAvailability({ vendor: "v" });
    const u = new URL(calls[0].url);
    assert.equal(u.pathname, "/api/vendors/v/availability");
    assert.equal(u.searchParams.get("from"), "2030-01-01T00:00:00.000Z");
    assert.equal(u.searchParams.get("to"), "2030-01-02T00:00:00.000Z");
    assert.equal(new URL(calls[1].url).search, "");
  });

  test("getAvailability needs exactly one of service and vendor", () => {
    const { client } = makeClient({ fetch: recordingFetch().fetch });
    assert.throws(() => client.getAvailability({}), TypeError);
    assert.throws(() => client.getAvailability({ service: "s", vendor: "v" }), TypeError);
  });

  test("getVendor, getService and getDemo read their routes", async () => {
    const { fetch, calls } = recordingFetch((url) => ({ status: 200, body: { url } }));
    const { client } = makeClient({ fetch });
    const paths = [];
    for (const res of [await client.getVendor("v/1"), await client.getService("s"), await client.getDemo()]) {
      paths.push(new URL(res.url).pathname);
    }
    assert.deepEqual(paths, ["/api/vendors/v%2F1", "/api/services/s", "/api/demo"]);
    assert.ok(calls.every((c) => c.init.method === "GET"));
  });

  test("a refused read rejects with the status and the server's error", async () => {
    const { fetch } = recordingFetch({ status: 404, body: { error: { code: "VENDOR_NOT_FOUND", message: "no demo vendor" } } });
    const { client } = makeClient({ fetch });
    await assert.rejects(client.getDemo(), (e) => e instanceof RealtimeError && e.status === 404 && e.code === "VENDOR_NOT_FOUND" && e.message === "no demo vendor");
  });

  test("an unreachable server, or no fetch at all, rejects with NETWORK_ERROR in plain words", async () => {
    const down = makeClient({ fetch: async () => { throw new TypeError("Failed to fetch"); } }).client;
    await assert.rejects(down.getVendor("v"), (e) =>
      e instanceof RealtimeError && e.code === "NETWORK_ERROR" && !/fetch/i.test(e.message) &&
      e.message === "The server could not be reached. Check your connection and try again." && e.cause.message === "Failed to fetch");
    const none = makeClient().client; // helpers pass fetch: null
    await assert.rejects(none.getService("s"), { code: "NETWORK_ERROR" });
  });

  test("a known token goes along as a bearer token", async () => {
    const { fetch, calls } = recordingFetch();
    const { client } = makeClient({ fetch, getToken: async () => "tok" });
    await client.getService("s");
    assert.equal(calls[0].init.headers.authorization, "Bearer tok");
  });

  test("getMe and getBooking read their routes", async () => {
    const { fetch, calls } = recordingFetch((url) => ({ status: 200, body: { url } }));
    const { client } = makeClient({ fetch });
    await client.getMe();
    await client.getBooking("b/1");
    assert.deepEqual(calls.map((c) => new URL(c.url).pathname), ["/api/me", "/api/bookings/b%2F1"]);
  });

  test("a 401 asks getToken for a fresh token and sends the request once more", async () => {
    const tokens = ["old", "new", "newer"];
    const reasons = [];
    const { fetch, calls } = recordingFetch((url) => ({ status: 401, body: { error: { code: "UNAUTHORIZED", message: "expired" } } }));
    const answers = [];
    const twice = async (url, init) => {
      answers.push(init.headers.authorization);
      return answers.length === 1 ? fetch(url, init) : { ok: true, status: 200, statusText: "", json: async () => ({ ok: 1 }) };
    };
    const { client } = makeClient({ fetch: twice, getToken: async ({ reason }) => (reasons.push(reason), tokens.shift()) });
    assert.deepEqual(await client.cancel("b1"), { ok: 1 });
    assert.deepEqual(answers, ["Bearer old", "Bearer new"]);
    assert.deepEqual(reasons, ["http", "refresh"]);
    assert.equal(calls.length, 1);

    // Refused again with the fresh token: rejected, not retried a second time.
    const refused = makeClient({ fetch, getToken: async () => tokens.shift() ?? "last" }).client;
    const before = calls.length;
    await assert.rejects(refused.getMe(), { code: "UNAUTHORIZED", status: 401 });
    assert.equal(calls.length - before, 2);
  });
});
