-- 0001 schema: the domain tables and the constraints that make double-booking impossible
-- whatever code path writes them (the functions in 0002, a future route, or raw SQL).
-- Idempotent: every statement may run again on a database that already has it.

CREATE TABLE IF NOT EXISTS rt_vendors (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS rt_services (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- A bigint stand-in for the id inside the exclusion constraint below: the embedded
    -- PostgreSQL has no btree_gist, so equality is expressed as int8range(key, key, '[]') &&.
    key         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    vendor_id   uuid NOT NULL REFERENCES rt_vendors (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    exclusive   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rt_services_identity UNIQUE (id, key, exclusive, vendor_id)
);
CREATE INDEX IF NOT EXISTS rt_services_vendor ON rt_services (vendor_id);

CREATE TABLE IF NOT EXISTS rt_slots (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service_id  uuid NOT NULL,
    service_key bigint NOT NULL,
    exclusive   boolean NOT NULL,
    vendor_id   uuid NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    capacity    integer NOT NULL,
    booked      integer NOT NULL DEFAULT 0,
    held        integer NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- The copied service columns cannot drift from the service: the foreign key pins them.
    CONSTRAINT rt_slots_service FOREIGN KEY (service_id, service_key, exclusive, vendor_id)
        REFERENCES rt_services (id, key, exclusive, vendor_id),
    CONSTRAINT rt_slots_period CHECK (ends_at > starts_at),
    CONSTRAINT rt_slots_capacity CHECK (capacity BETWEEN 0 AND 1000000),
    CONSTRAINT rt_slots_booked CHECK (booked >= 0),
    CONSTRAINT rt_slots_held CHECK (held >= 0),
    CONSTRAINT rt_slots_usage CHECK (booked + held <= capacity),
    CONSTRAINT rt_slots_version CHECK (version >= 1),
    CONSTRAINT rt_slots_identity UNIQUE (id, service_key, exclusive, starts_at, ends_at)
) WITH (fillfactor = 70);  -- room for HOT updates: every booking rewrites its slot row
CREATE INDEX IF NOT EXISTS rt_slots_service_start ON rt_slots (service_id, starts_at);
CREATE INDEX IF NOT EXISTS rt_slots_vendor_start ON rt_slots (vendor_id, starts_at);

-- Holds and bookings share one table so that a single exclusion constraint covers both:
-- on an exclusive service no active hold and no confirmed booking overlap in time.
CREATE TABLE IF NOT EXISTS rt_reservations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind        text NOT NULL CHECK (kind IN ('hold', 'booking')),
    slot_id     uuid NOT NULL,
    service_key bigint NOT NULL,
    exclusive   boolean NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    customer_id text CHECK (length(customer_id) <= 200),
    quantity    integer NOT NULL CHECK (quantity >= 1),
    status      text NOT NULL,
    expires_at  timestamptz,
    hold_id     uuid REFERENCES rt_reservations (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rt_reservations_slot FOREIGN KEY (slot_id, service_key, exclusive, starts_at, ends_at)
        REFERENCES rt_slots (id, service_key, exclusive, starts_at, ends_at),
    CONSTRAINT rt_reservations_status CHECK (
        (kind = 'hold' AND status IN ('active', 'confirmed', 'released', 'expired')
            AND expires_at IS NOT NULL)
        OR (kind = 'booking' AND status IN ('confirmed', 'cancelled'))),
    CONSTRAINT rt_reservations_no_overlap EXCLUDE USING gist (
        int8range(service_key, service_key, '[]') WITH &&,
        tstzrange(starts_at, ends_at) WITH &&)
        WHERE (exclusive AND ((kind = 'hold' AND status = 'active')
                              OR (kind = 'booking' AND status = 'confirmed')))
);
CREATE INDEX IF NOT EXISTS rt_reservations_slot ON rt_reservations (slot_id);
CREATE INDEX IF NOT EXISTS rt_reservations_expiry ON rt_reservations (expires_at)
    WHERE kind = 'hold' AND status = 'active';

-- The log the channels read. `pos` is NULL until the sequencer (0002) numbers the row in
-- commit order; readers only ever look at numbered rows, so a late commit is never skipped.
CREATE TABLE IF NOT EXISTS rt_events (
    id           bigserial PRIMARY KEY,
    pos          bigint,
    kind         text NOT NULL CHECK (kind IN ('booked', 'cancelled', 'held', 'released',
                                               'expired', 'created', 'changed', 'conflict')),
    slot_id      uuid NOT NULL,
    service_id   uuid NOT NULL,
    vendor_id    uuid NOT NULL,
    version      bigint NOT NULL,
    quantity     integer NOT NULL DEFAULT 0,
    slot         jsonb NOT NULL,
    alternatives jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS rt_events_pos ON rt_events (pos) WHERE pos IS NOT NULL;
CREATE INDEX IF NOT EXISTS rt_events_unnumbered ON rt_events (id) WHERE pos IS NULL;
CREATE INDEX IF NOT EXISTS rt_events_service_pos ON rt_events (service_id, pos) WHERE pos IS NOT NULL;
CREATE INDEX IF NOT EXISTS rt_events_vendor_pos ON rt_events (vendor_id, pos) WHERE pos IS NOT NULL;

CREATE TABLE IF NOT EXISTS rt_audit (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    action         text NOT NULL,
    outcome        text NOT NULL,
    slot_id        uuid,
    reservation_id uuid,
    customer_id    text,
    quantity       integer,
    version        bigint,
    detail         jsonb
);
CREATE INDEX IF NOT EXISTS rt_audit_slot ON rt_audit (slot_id, version);

CREATE TABLE IF NOT EXISTS rt_sequencer (
    id          integer PRIMARY KEY CHECK (id = 1),
    epoch       text NOT NULL,
    last_pos    bigint NOT NULL DEFAULT 0,
    pruned_pos  bigint NOT NULL DEFAULT 0
);
INSERT INTO rt_sequencer (id, epoch)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 8))
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS rt_doorbell (
    id    integer PRIMARY KEY CHECK (id = 1),
    rung  boolean NOT NULL DEFAULT false
) WITH (fillfactor = 10);
INSERT INTO rt_doorbell (id, rung) VALUES (1, false) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS rt_idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
