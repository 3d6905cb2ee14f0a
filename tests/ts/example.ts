// A TypeScript page using every part of realtime.js's public API, compiled by tests/ts/test_types.py
// with `tsc --noEmit --strict` against static/realtime.d.ts. The `@ts-expect-error` lines check
// that the types refuse what the library does not accept (they fail to compile if they stop
// being errors).
import RealtimeClientDefault, {
  Channel,
  RealtimeClient,
  RealtimeError,
  STATE,
  TRANSPORT,
  VERSION,
  backoffDelay,
  connect,
  isNewer,
  tokenExpiry,
  type AnyEvent,
  type Availability,
  type AvailabilityUpdatedEvent,
  type Booking,
  type BookingResult,
  type ChannelEvents,
  type ChannelStatus,
  type ClientEvents,
  type ConflictDetectedEvent,
  type ConnectionState,
  type ErrorCode,
  type ErrorFields,
  type Hold,
  type HoldResult,
  type Me,
  type RealtimeBookingElement,
  type RealtimeClientOptions,
  type ReleaseResult,
  type Service,
  type Slot,
  type Transport,
  type UpdateReason,
  type VendorWithServices,
} from "../../realtime/static/realtime.js";

const version: string = VERSION;
const states: ConnectionState[] = [STATE.LIVE, STATE.RECONNECTING, STATE.OFFLINE];
const transports: Transport[] = [TRANSPORT.WEBSOCKET, TRANSPORT.SSE];
// @ts-expect-error: not a connection state
const notAState: ConnectionState = "online";

const options: RealtimeClientOptions = {
  url: "wss://booking.example.com/ws",
  httpUrl: "https://booking.example.com",
  sseUrl: "https://booking.example.com/sse",
  getToken: async ({ reason }) => (reason === "refresh" ? "fresh" : "token"),
  baseDelay: 500,
  maxDelay: 30_000,
  stableAfter: 5_000,
  heartbeatInterval: 15_000,
  pongTimeout: 8_000,
  connectTimeout: 10_000,
  requestTimeout: 20_000,
  refreshMargin: 60_000,
  tokenRefreshInterval: 300_000,
  httpFallback: true,
  sseFallback: true,
  sseAfter: 3,
  wsRetryInterval: 300_000,
  WebSocket: globalThis.WebSocket,
  EventSource: globalThis.EventSource,
  fetch: globalThis.fetch.bind(globalThis),
  now: () => Date.now(),
  random: Math.random,
  setTimeout: (fn, delay) => setTimeout(fn, delay),
  clearTimeout: (timer) => clearTimeout(timer),
  document,
  window,
  navigator,
};

const rt = new RealtimeClient(options);
const same: RealtimeClient = new RealtimeClientDefault();
const connected: RealtimeClient = connect({ url: "wss://booking.example.com/ws" });

function show(slot: Slot): string {
  const { id, service_id, vendor_id, starts_at, ends_at, capacity, booked, held, available } = slot;
  return `${id} ${service_id} ${vendor_id} ${starts_at}-${ends_at}: ${available}/${capacity} (${booked} booked, ${held} held) v${slot.version}`;
}

// Every event of the client, with its payload.
const offs: Array<() => void> = [
  rt.on("state", ({ state, previous }) => console.log(state satisfies ConnectionState, previous)),
  rt.on("transport", ({ transport, previous }) => console.log(transport satisfies Transport, previous)),
  rt.on("availability:updated", (e: AvailabilityUpdatedEvent) => {
    const reason: UpdateReason = e.reason;
    console.log(e.channel, show(e.slot), reason, e.cursor, e.replay);
  }),
  rt.on("conflict:detected", (e: ConflictDetectedEvent) =>
    console.log(e.channel, show(e.slot), e.quantity, e.alternatives.map(show), e.cursor, e.replay, e.changed)),
  rt.on("presence", ({ channel, count }) => console.log(channel, count + 1)),
  rt.on("snapshot", ({ channel, slots, cursor }) => console.log(channel, slots.map(show), cursor)),
  rt.on("subscribed", ({ channel, cursor, resumed, missed }) => console.log(channel, cursor, resumed, missed ?? 0)),
  rt.on("error", ({ code, error, channel }) => console.log(code, error instanceof RealtimeError ? error.code : error, channel)),
  rt.on("message", (frame) => console.log(frame.type)),
  rt.on("resync", ({ reason }) => console.log(reason)),
  rt.on("disconnected", ({ code, reason }) => console.log(code, reason)),
  rt.on("waiting", ({ code, error }) => console.log(code, error.message)),
  rt.on("*", (event: AnyEvent<ClientEvents>) => {
    if (event.type === "state") console.log(event.state);
  }),
  rt.once("state", ({ state }) => console.log(state)),
];
const onState = ({ state }: ClientEvents["state"]) => console.log(state);
rt.on("state", onState);
rt.off("state", onState);
// @ts-expect-error: no such event
rt.on("connected", () => {});
// @ts-expect-error: a state event has no slot
rt.on("state", ({ slot }) => slot);

async function page(): Promise<void> {
  console.log(rt.live, rt.state, rt.transport, rt.url, rt.httpUrl, rt.sseUrl, rt.channels.size, rt.options.requestTimeout);
  const demo: { vendor_id: string } = await rt.getDemo();
  const me: Me = await rt.getMe();
  const mine: BookingResult = await rt.getBooking("b1");
  console.log(me.auth, me.customer_id?.length, mine.booking.status);
  const vendor: VendorWithServices = await rt.getVendor(demo.vendor_id);
  const service: Service = await rt.getService(vendor.services[0].id);
  console.log(service.name, service.exclusive, service.vendor_id);
  const availability: Availability = await rt.getAvailability({ service: service.id, from: new Date(), to: Date.now() + 7 * 86_400_000 });
  await rt.getAvailability({ vendor: vendor.id, from: "2026-12-01T00:00:00Z" });
  // @ts-expect-error: one of service or vendor, not both
  await rt.getAvailability({ service: "s", vendor: "v" });

  const channel: Channel = rt.subscribe(availability.channel, { since: availability.cursor, from: new Date(), to: null, slots: availability.slots });
  const channelOffs = [
    channel.on("availability:updated", ({ slot }) => console.log(show(slot))),
    channel.on("conflict:detected", ({ alternatives }) => console.log(alternatives.length)),
    channel.on("presence", ({ count }) => console.log(count)),
    channel.on("snapshot", ({ slots }) => console.log(slots.length)),
    channel.on("subscribed", ({ resumed }) => console.log(resumed)),
    channel.on("*", (event: AnyEvent<ChannelEvents>) => console.log(event.type)),
  ];
  const subscribed = await channel.ready;
  const status: ChannelStatus = channel.status;
  console.log(subscribed.cursor, status, channel.name, channel.cursor, channel.from, channel.to, channel.presence, channel.error?.code);
  console.log(channel.client === rt, channel.slots.get("x"), channel.get("x"), channel.list().map(show), channel.inWindow(channel.list()[0]));
  const first = channel.list()[0];
  const slot: Slot | undefined = rt.getSlot(first.id);

  try {
    const { booking, slot: after }: BookingResult = await rt.book(first.id, { quantity: 2, idempotencyKey: crypto.randomUUID(), customerId: "c-1" });
    const b: Booking = booking;
    console.log(b.id, b.slot_id, b.customer_id, b.quantity, b.status, b.created_at, show(after));
    await rt.cancel(b.id);
    await rt.cancel(b.id, { whenOnline: true });
  } catch (err) {
    if (!(err instanceof RealtimeError)) throw err;
    const code: ErrorCode = err.code;
    const fields: ErrorFields = err.error;
    if (code === "BOOKING_CONFLICT") console.log(err.slot && show(err.slot), err.alternatives?.map(show), err.reason);
    else if (code === "OFFLINE") console.log("You are offline", err.outcome === "unknown", err.cause);
    else if (code === "NETWORK_ERROR" || code === "TIMEOUT") console.log(err.message);
    else if (code === "HTTP_502") console.log(err.status);
    console.log(fields.message, err.field, err.hold_status, err.retry_after, err.request_id, err.down, err.name, err.stack);
  }

  // Waits for the network instead of rejecting with OFFLINE; books once, whatever happens.
  const queued: Promise<BookingResult> = rt.book(first.id, { whenOnline: true });
  const { hold, slot: heldSlot }: HoldResult = await rt.hold(first.id, { quantity: 3, ttlSeconds: 600 });
  const h: Hold = hold;
  console.log(h.id, h.slot_id, h.quantity, h.expires_at, show(heldSlot));
  await rt.confirm(hold, { idempotencyKey: "k", whenOnline: true });
  const released: ReleaseResult = await rt.release(hold);
  await rt.release(hold.id);
  // @ts-expect-error: a confirmed hold books its own quantity
  await rt.confirm(hold, { quantity: 2 });
  // @ts-expect-error: slot ids are strings
  await rt.book(42);
  console.log(show(released.slot), slot && show(slot), await queued);

  rt.resync();
  rt.resync("manual");
  await channel.unsubscribe();
  await rt.unsubscribe("service:other");
  for (const off of [...offs, ...channelOffs]) off();
  rt.close();
}

const err = new RealtimeError({ code: "OFFLINE", message: "You are offline." });
const fromText = new RealtimeError("something");
const delay: number = backoffDelay(3, { baseDelay: 500, maxDelay: 30_000, random: Math.random }) + backoffDelay(0);
const newer: boolean = isNewer({ version: 2 }, { version: 1 }) && isNewer({ version: 1 });
const expiry: number | null = tokenExpiry("a.b.c");
console.log(version, states, transports, notAState, same.connect(), connected.state, err.code, fromText.message, delay, newer, expiry);

// The widget, typed through HTMLElementTagNameMap: a signed-in page hands it a token provider.
const widget: RealtimeBookingElement | null = document.querySelector("realtime-booking");
if (widget) {
  widget.getToken = async ({ reason }) => (reason === "refresh" ? "fresh.jwt" : "jwt");
  widget.token = null;
  // @ts-expect-error: a provider, not a token
  widget.getToken = "jwt";
}
const made = document.createElement("realtime-booking");
made.getToken = null;
void page();
