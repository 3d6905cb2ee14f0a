// Constants of the client: its version, the connection states and transports as the server
// documents them, the default options, and the readyState values of WebSocket and EventSource.

export const VERSION = "0.1.0";

/** Connection states, as the contract names them. */
export const STATE = Object.freeze({
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
});

/** Transports: a WebSocket, or the Server-Sent Events stream plus the HTTP API. */
export const TRANSPORT = Object.freeze({
  WEBSOCKET: "websocket",
  SSE: "sse",
});

export const DEFAULTS = Object.freeze({
  baseDelay: 500, // ms: first reconnect waits random() * baseDelay
  maxDelay: 30000, // ms: cap of the exponential backoff
  stableAfter: 5000, // ms: a connection open this long resets the backoff
  heartbeatInterval: 15000, // ms without any frame from the server before we ping
  pongTimeout: 8000, // ms a ping may stay unanswered (wall clock) before the socket is dead
  connectTimeout: 10000, // ms a socket may stay CONNECTING
  requestTimeout: 20000, // ms for book / hold / cancel to be answered
  refreshMargin: 60000, // ms before a token's `exp` at which it is refreshed with `auth`
  httpFallback: true, // book / hold / cancel over HTTP when the socket is not live
  sseFallback: true, // fall back to Server-Sent Events when WebSockets cannot be opened
  sseAfter: 3, // WebSocket attempts in a row that never became live before SSE is tried beside them
  wsRetryInterval: 300000, // ms on SSE between attempts to go back to a WebSocket (0: never)
});

export const OPEN = 1;
export const CONNECTING = 0;
export const CLOSED = 2; // an EventSource's readyState once it has given up
export const SSE_EVENTS = ["subscribed", "availability:updated", "conflict:detected"];
