// Types of realtime.js, the browser client of a realtime availability server (docs/client.md).
//
//   import { RealtimeClient, RealtimeError, type Slot } from "https://booking.example.com/static/realtime.js";
//
// Keep a copy beside your code (or point `paths` at it); every name realtime.js exports is
// declared here (tests/ts checks both, and compiles an example with `tsc --strict`).

/** The library's version. */
export declare const VERSION: string;

/** Connection states. */
export declare const STATE: {
  readonly LIVE: "live";
  readonly RECONNECTING: "reconnecting";
  readonly OFFLINE: "offline";
};
export type ConnectionState = (typeof STATE)[keyof typeof STATE];

/** Transports: a WebSocket, or the Server-Sent Events stream plus the HTTP API. */
export declare const TRANSPORT: {
  readonly WEBSOCKET: "websocket";
  readonly SSE: "sse";
};
export type Transport = (typeof TRANSPORT)[keyof typeof TRANSPORT];

// --- the server's objects ------------------------------------------------------------------------

/** A time window of one service; `available = capacity - booked - held`. Times are RFC 3339 UTC. */
export interface Slot {
  id: string;
  service_id: string;
  vendor_id: string;
  starts_at: string;
  ends_at: string;
  capacity: number;
  booked: number;
  held: number;
  available: number;
  /** Grows by one with every change: a higher version is a newer state. */
  version: number;
}

export interface Booking {
  id: string;
  slot_id: string;
  customer_id: string | null;
  quantity: number;
  status: "confirmed" | "cancelled";
  created_at: string;
}

export interface Hold {
  id: string;
  slot_id: string;
  quantity: number;
  expires_at: string;
}

export interface Service {
  id: string;
  vendor_id: string;
  name: string;
  exclusive: boolean;
}

export interface VendorWithServices {
  id: string;
  name: string;
  services: Service[];
}

/** An availability response: pass `cursor` as `since` (and `slots`) to `subscribe(channel, ...)`. */
export interface Availability {
  channel: string;
  cursor: string;
  slots: Slot[];
}

export interface BookingResult {
  booking: Booking;
  slot: Slot;
}

export interface HoldResult {
  hold: Hold;
  slot: Slot;
}

export interface ReleaseResult {
  slot: Slot;
}

/** Why a slot changed. `result`: the answer to this client's own request. */
export type UpdateReason = "booked" | "cancelled" | "held" | "released" | "expired" | "created" | "changed" | "result";

// --- errors ----------------------------------------------------------------------------------------

/**
 * Codes a RealtimeError may carry. The server's (see docs/api.md), and the client's own:
 * OFFLINE (the browser has no network), NETWORK_ERROR (the server could not be reached),
 * TIMEOUT, CONNECTION_LOST (the socket went before a request that may not be re-sent was
 * answered), CLIENT_CLOSED (close() was called), ERROR, and `HTTP_<status>` for an answer
 * without an error object.
 */
export type ErrorCode =
  | "OFFLINE"
  | "NETWORK_ERROR"
  | "TIMEOUT"
  | "CONNECTION_LOST"
  | "CLIENT_CLOSED"
  | "ERROR"
  | "BOOKING_CONFLICT"
  | "HOLD_EXPIRED"
  | "HOLD_NOT_FOUND"
  | "BOOKING_NOT_FOUND"
  | "SLOT_NOT_FOUND"
  | "SERVICE_NOT_FOUND"
  | "VENDOR_NOT_FOUND"
  | "NOT_FOUND"
  | "VALIDATION_ERROR"
  | "INVALID_JSON"
  | "PAYLOAD_TOO_LARGE"
  | "IDEMPOTENCY_KEY_REUSED"
  | "CAPACITY_BELOW_USAGE"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "RATE_LIMITED"
  | "DATABASE_UNAVAILABLE"
  | "NOT_READY"
  | "INTERNAL_ERROR"
  | "METHOD_NOT_ALLOWED"
  | "BAD_MESSAGE"
  | "UNKNOWN_TYPE"
  | "UNKNOWN_CHANNEL"
  | "NOT_SUBSCRIBED"
  | "TOO_MANY_SUBSCRIPTIONS"
  | `HTTP_${number}`;

/** The error object of the server (or the client), as a RealtimeError carries it. */
export interface ErrorFields {
  code: ErrorCode;
  /** Plain words a person may be shown as they are. */
  message: string;
  /** The HTTP status, when the error came over HTTP. */
  status?: number;
  /** The input field a VALIDATION_ERROR is about. */
  field?: string;
  /** BOOKING_CONFLICT, HOLD_EXPIRED: the slot as it is now. */
  slot?: Slot | null;
  /** BOOKING_CONFLICT: up to 5 slots of the same service with enough available. */
  alternatives?: Slot[];
  /** BOOKING_CONFLICT: capacity or overlap. */
  reason?: string;
  hold_status?: string | null;
  /** RATE_LIMITED: seconds. */
  retry_after?: number;
  /** The request may have reached the server: retry a booking with the same idempotency key to learn. */
  outcome?: "unknown";
  request_id?: string | null;
  down?: Record<string, string>;
}

/** What every promise of the client rejects with: an Error carrying every field of ErrorFields. */
export declare class RealtimeError extends Error {
  constructor(error: Partial<ErrorFields> | string);
  name: "RealtimeError";
  /** The error object as received. */
  error: ErrorFields;
  /** OFFLINE / NETWORK_ERROR: what the browser said (e.g. a TypeError "Failed to fetch"), for developers. */
  cause?: unknown;
}
// The fields of the error object, merged into the class (`err.code`, `err.slot`, ...).
export interface RealtimeError extends ErrorFields {}

// --- events ----------------------------------------------------------------------------------------

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
}

export interface TransportEvent {
  transport: Transport;
  previous: Transport;
}

export interface AvailabilityUpdatedEvent {
  channel: string;
  slot: Slot;
  reason: UpdateReason;
  cursor: string | null;
  /** Replayed on a resume (missed while away), not live. */
  replay: boolean;
}

export interface ConflictDetectedEvent {
  channel: string;
  /** The slot as this client now holds it. */
  slot: Slot;
  quantity: number;
  alternatives: Slot[];
  cursor: string;
  replay: boolean;
  /** Whether the conflict's slot changed the local state. */
  changed: boolean;
}

export interface PresenceEvent {
  channel: string;
  count: number;
}

export interface SnapshotEvent {
  channel: string;
  slots: Slot[];
  cursor: string | null;
}

export interface SubscribedEvent {
  channel: string;
  cursor: string | null;
  /** True when the server sent what was missed since the cursor, false for a snapshot. */
  resumed: boolean;
  /** How many events were missed (on a resume), else null. */
  missed: number | null;
}

export interface ErrorEvent {
  code: string;
  /** A RealtimeError, or what `getToken` or a constructor threw (TOKEN_FAILED, CONNECT_FAILED). */
  error: unknown;
  channel?: string;
}

export interface ResyncEvent {
  reason: string;
}

export interface DisconnectedEvent {
  code: number | undefined;
  reason: string | undefined;
}

/** A `whenOnline` request found the browser offline or failed on the network, and waits to be sent again. */
export interface WaitingEvent {
  code: "OFFLINE" | "NETWORK_ERROR" | "TIMEOUT";
  error: RealtimeError;
}

/** A frame from the server, as received. */
export interface ServerMessage {
  type: string;
  [field: string]: unknown;
}

/** The events of a channel (each also emitted by the client, for every channel). */
export interface ChannelEvents {
  "availability:updated": AvailabilityUpdatedEvent;
  "conflict:detected": ConflictDetectedEvent;
  presence: PresenceEvent;
  snapshot: SnapshotEvent;
  subscribed: SubscribedEvent;
}

/** The events of the client. */
export interface ClientEvents extends ChannelEvents {
  state: StateEvent;
  transport: TransportEvent;
  error: ErrorEvent;
  message: ServerMessage;
  resync: ResyncEvent;
  disconnected: DisconnectedEvent;
  waiting: WaitingEvent;
}

/** What a "*" listener receives: any event, with its type. */
export type AnyEvent<E> = { [K in keyof E]: { type: K } & E[K] }[keyof E];

/** Listening: `on` returns a function that stops listening. */
declare class Emitter<E> {
  on<K extends keyof E>(type: K, fn: (detail: E[K]) => void): () => void;
  on(type: "*", fn: (event: AnyEvent<E>) => void): () => void;
  off<K extends keyof E>(type: K, fn: (detail: E[K]) => void): void;
  off(type: "*", fn: (event: AnyEvent<E>) => void): void;
  once<K extends keyof E>(type: K, fn: (detail: E[K]) => void): () => void;
  once(type: "*", fn: (event: AnyEvent<E>) => void): () => void;
}

// --- channels --------------------------------------------------------------------------------------

/** A time as the client accepts it: an RFC 3339 string, a Date, or epoch milliseconds. */
export type TimeInput = string | Date | number;

export interface SubscribeOptions {
  /** A cursor (e.g. an availability response's): resume from it instead of a snapshot. */
  since?: string | null;
  /** The window shown: slots outside it are ignored. */
  from?: TimeInput | null;
  to?: TimeInput | null;
  /** Initial state (e.g. that availability response's slots). */
  slots?: Slot[];
}

export type ChannelStatus = "pending" | "subscribed" | "error" | "closed";

/** One subscribed channel (`vendor:ID` or `service:ID`) and its local state. */
export declare class Channel extends Emitter<ChannelEvents> {
  constructor(client: RealtimeClient, name: string, opts?: SubscribeOptions);
  readonly client: RealtimeClient;
  readonly name: string;
  /** The last cursor received: where a resume starts. */
  cursor: string | null;
  from: TimeInput | null;
  to: TimeInput | null;
  /** Slots by id, each only ever replaced by a newer version. */
  slots: Map<string, Slot>;
  /** How many people look at this channel (WebSocket only; null on SSE). */
  presence: number | null;
  status: ChannelStatus;
  /** Why the server refused it (status "error"): UNKNOWN_CHANNEL, TOO_MANY_SUBSCRIPTIONS. */
  error: RealtimeError | null;
  /** Resolves with the first `subscribed`; rejects when the server refuses the channel. */
  ready: Promise<SubscribedEvent>;
  get(id: string): Slot | undefined;
  /** Every slot, by start time. */
  list(): Slot[];
  inWindow(slot: Slot | null | undefined): boolean;
  unsubscribe(): Promise<void>;
}

// --- the client ------------------------------------------------------------------------------------

/** Anything with addEventListener / removeEventListener (a document or a window). */
export interface EventTargetLike {
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
}

export interface DocumentLike extends EventTargetLike {
  visibilityState?: string;
}

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  /** Set by the client: called with `{data}` (a text frame). */
  onmessage: ((event: any) => void) | null;
  /** Set by the client: called with `{code, reason}`. */
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  /** The client listens with `(event: {data, lastEventId})`. */
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}

export interface GetTokenContext {
  reason: "connect" | "refresh" | "http";
}

export interface RealtimeClientOptions {
  /** The WebSocket URL; default: `/ws` of the server this module was loaded from. */
  url?: string | null;
  /** The HTTP base URL; default: derived from `url`. */
  httpUrl?: string | null;
  /** The Server-Sent Events URL; default: `<httpUrl>/sse`. */
  sseUrl?: string | null;
  /** A JWT for the connection and requests; called again to refresh it before it expires. */
  getToken?: ((context: GetTokenContext) => string | null | undefined | Promise<string | null | undefined>) | null;
  /** ms: the first reconnect waits random() * baseDelay (default 500). */
  baseDelay?: number;
  /** ms: the cap of the exponential backoff (default 30000). */
  maxDelay?: number;
  /** ms a connection must stay open to reset the backoff (default 5000). */
  stableAfter?: number;
  /** ms without any frame before a ping (default 15000). */
  heartbeatInterval?: number;
  /** ms a ping may stay unanswered while the page is awake (default 8000). */
  pongTimeout?: number;
  /** ms a socket may stay connecting (default 10000). */
  connectTimeout?: number;
  /** ms for a request to be answered (default 20000). */
  requestTimeout?: number;
  /** ms before a token's `exp` at which it is refreshed (default 60000). */
  refreshMargin?: number;
  /** ms between refreshes of a token without `exp` (default: never). */
  tokenRefreshInterval?: number;
  /** Requests over HTTP when the socket is not live (default true). */
  httpFallback?: boolean;
  /** Fall back to Server-Sent Events when WebSockets cannot be opened (default true). */
  sseFallback?: boolean;
  /** WebSocket attempts in a row that never got live before a stream is tried beside them (default 3). */
  sseAfter?: number;
  /** ms on SSE between attempts to go back to a WebSocket; 0: never (default 300000). */
  wsRetryInterval?: number;
  // The outside world, injectable (tests, other runtimes).
  WebSocket?: new (url: string) => WebSocketLike;
  EventSource?: (new (url: string) => EventSourceLike) | null;
  fetch?: ((input: string, init?: any) => Promise<any>) | null;
  now?: () => number;
  random?: () => number;
  setTimeout?: (fn: () => void, delay: number) => unknown;
  clearTimeout?: (timer: any) => void;
  document?: DocumentLike | null;
  window?: EventTargetLike | null;
  navigator?: { onLine?: boolean } | null;
}

export interface BookOptions {
  /** Units to book (default 1; a confirmed hold books its own quantity). */
  quantity?: number;
  /** Confirm this hold (see also `confirm`). */
  holdId?: string;
  /** Default: a fresh UUID. The same key never books twice. */
  idempotencyKey?: string;
  /** Over HTTP, with auth off. */
  customerId?: string;
  /**
   * Instead of rejecting with OFFLINE / NETWORK_ERROR / TIMEOUT, wait for the network and send
   * it again with the same key, as often as needed; the promise stays pending meanwhile.
   */
  whenOnline?: boolean;
}

export type ConfirmOptions = Omit<BookOptions, "quantity" | "holdId">;

export interface HoldOptions {
  quantity?: number;
  /** 1..3600 (default 300). */
  ttlSeconds?: number;
}

export interface CancelOptions {
  /** As for `book`: wait for the network instead of rejecting. */
  whenOnline?: boolean;
}

export type AvailabilityQuery =
  | { service: string; vendor?: undefined; from?: TimeInput; to?: TimeInput }
  | { vendor: string; service?: undefined; from?: TimeInput; to?: TimeInput };

/**
 * The client: one WebSocket (or Server-Sent Events stream), any number of channels, automatic
 * reconnect, offline as the browser reports it.
 */
export declare class RealtimeClient extends Emitter<ClientEvents> {
  constructor(options?: RealtimeClientOptions);
  /** The options in force (defaults filled in). */
  readonly options: Required<Pick<RealtimeClientOptions, "baseDelay" | "maxDelay" | "stableAfter" | "heartbeatInterval" | "pongTimeout" | "connectTimeout" | "requestTimeout" | "refreshMargin" | "httpFallback" | "sseFallback" | "sseAfter" | "wsRetryInterval">> & RealtimeClientOptions;
  readonly url: string | null;
  readonly httpUrl: string | null;
  readonly sseUrl: string | null;
  getToken: RealtimeClientOptions["getToken"];
  /** `live`, `reconnecting` or `offline`; every change is a `state` event. */
  readonly state: ConnectionState;
  readonly transport: Transport;
  readonly channels: Map<string, Channel>;
  /** Whether the connection is open and every channel subscribed. */
  readonly live: boolean;
  /** Open the connection (idempotent; subscribe() calls it). */
  connect(): this;
  /** Close for good: pending and waiting requests reject with CLIENT_CLOSED; state `offline`. */
  close(): void;
  subscribe(name: string, opts?: SubscribeOptions): Channel;
  unsubscribe(name: string): Promise<void>;
  /** The slot with this id in any subscribed channel. */
  getSlot(id: string): Slot | undefined;
  /** Book units of a slot. Rejects with BOOKING_CONFLICT (with `slot`, `alternatives`), OFFLINE, NETWORK_ERROR, ... */
  book(slotId: string, options?: BookOptions): Promise<BookingResult>;
  /** Turn a hold into a booking of its quantity (HOLD_EXPIRED once it has expired). */
  confirm(hold: Pick<Hold, "id" | "slot_id">, options?: ConfirmOptions): Promise<BookingResult>;
  hold(slotId: string, options?: HoldOptions): Promise<HoldResult>;
  /** Give a hold back before it expires (over HTTP). */
  release(hold: Pick<Hold, "id"> | string): Promise<ReleaseResult>;
  /** Cancelling twice is harmless. */
  cancel(bookingId: string, options?: CancelOptions): Promise<BookingResult>;
  getAvailability(query: AvailabilityQuery): Promise<Availability>;
  getVendor(id: string): Promise<VendorWithServices>;
  getService(id: string): Promise<Service>;
  /** The demo vendor of a server started with `--demo` (404 VENDOR_NOT_FOUND when none). */
  getDemo(): Promise<{ vendor_id: string }>;
  /** One of this customer's bookings (404 BOOKING_NOT_FOUND for someone else's). */
  getBooking(id: string): Promise<BookingResult>;
  /** Whether booking needs a token here, and whose token this client sends (needs no token). */
  getMe(): Promise<Me>;
  /** Check the connection now (what a visible tab or the network coming back does by itself). */
  resync(reason?: string): void;
}

/** `GET /api/me`. */
export interface Me {
  /** The server checks tokens: booking, holding and cancelling need one. */
  auth: boolean;
  /** The token's `sub`; null without a token (and always with auth off). */
  customer_id: string | null;
}

/** What `<realtime-booking>`'s `getToken` is given: as the client's, see `GetTokenContext`. */
export type BookingTokenProvider = (context: GetTokenContext) => string | null | undefined | Promise<string | null | undefined>;

/**
 * The booking widget, `<realtime-booking>` (defined by `/static/widget.js`; docs/widget.md).
 * Its options are attributes (`service`, `vendor`, `server`, `checkout`, `date`, `hold-ttl`,
 * `token`, `signin-url`, `query-params`); a signed-in page gives it `getToken`.
 */
export interface RealtimeBookingElement extends HTMLElement {
  /** Called for the customer's JWT at connect, before it expires and after a refusal. */
  getToken: BookingTokenProvider | null;
  /** A fixed JWT for simple pages (the `token` attribute); `getToken` wins when both are set. */
  token: string | null;
}

declare global {
  interface HTMLElementTagNameMap {
    "realtime-booking": RealtimeBookingElement;
  }
}

/** Exponential backoff with full jitter: a random delay in [0, min(maxDelay, baseDelay * 2^attempt)). */
export declare function backoffDelay(
  attempt: number,
  options?: { baseDelay?: number; maxDelay?: number; random?: () => number },
): number;

/** True when `incoming` is a newer version of a slot than `current` (or there is no current). */
export declare function isNewer(incoming: Pick<Slot, "version"> | null | undefined, current?: Pick<Slot, "version"> | null): boolean;

/** The `exp` claim of a JWT in milliseconds, or null. */
export declare function tokenExpiry(token: unknown): number | null;

/** Shorthand: a client, connected. */
export declare function connect(options?: RealtimeClientOptions): RealtimeClient;

export default RealtimeClient;
