// realtime.js: the browser client of a realtime availability server.
//
// A dependency-free set of ES modules (no build step). Import this entry point straight from
// the server; it loads the modules of static/realtime/ beside it:
//
//   import { RealtimeClient } from "https://booking.example.com/static/realtime.js";
//   const rt = new RealtimeClient();            // connects to the server it was loaded from
//   const ch = rt.subscribe("service:ID");       // local state + events, resumed across reconnects
//   ch.on("availability:updated", ({ slot }) => render(slot));
//   const { booking } = await rt.book(slotId);   // rejects with a RealtimeError on conflict
//
// When WebSockets cannot be opened (a proxy that breaks them), it falls back by itself to the
// server's Server-Sent Events stream (`/sse`) for updates and to the HTTP API for bookings;
// `rt.transport` says which ("websocket" or "sse").
//
// Every file is also at this release's /static/v/<version>/, which browsers keep without
// asking again (docs/client.md, "Which URL to import").
//
// docs/client.md documents the whole API and static/realtime.d.ts types it. Everything that
// touches the outside world (the WebSocket and EventSource constructors, the clock, timers,
// randomness, fetch, document/window/navigator) can be injected, so the reconnect, heartbeat,
// fallback, offline and ordering logic is unit tested in Node with fakes.

// Every module, listed here so that the browser fetches them all as soon as it has read this
// file, instead of discovering them one level of imports at a time (bench/clientload.py).
import "./realtime/backoff.js";
import "./realtime/channel.js";
import "./realtime/client.js";
import "./realtime/constants.js";
import "./realtime/cursors.js";
import "./realtime/emitter.js";
import "./realtime/errors.js";
import "./realtime/messages.js";
import "./realtime/offline.js";
import "./realtime/reads.js";
import "./realtime/reconnect.js";
import "./realtime/requests.js";
import "./realtime/sse-recovery.js";
import "./realtime/tokens.js";
import "./realtime/transport-sse.js";
import "./realtime/transport-ws.js";

export { VERSION, STATE, TRANSPORT } from "./realtime/constants.js";
export { backoffDelay } from "./realtime/backoff.js";
export { isNewer } from "./realtime/cursors.js";
export { tokenExpiry } from "./realtime/tokens.js";
export { RealtimeError } from "./realtime/errors.js";
export { Channel } from "./realtime/channel.js";
export { RealtimeClient, connect } from "./realtime/client.js";
export { RealtimeClient as default } from "./realtime/client.js";
