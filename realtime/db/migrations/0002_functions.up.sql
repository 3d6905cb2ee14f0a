-- 0002 functions: one PL/pgSQL function per operation. Each runs inside the caller's single
-- transaction, changes the slot, bumps its version, writes an audit row and an event row, and
-- rings the doorbell so listeners wake up.
--
-- Lock order, everywhere: reservation row (the hold or booking being changed)
--   -> service row (FOR NO KEY UPDATE, exclusive services only)
--   -> slot row (FOR UPDATE)
--   -> doorbell row (last, only when it rings).
-- Results are jsonb objects with an "outcome"; Python maps outcomes to the contract's codes.

-- RFC 3339 in UTC with a Z; milliseconds only when there are any.
CREATE OR REPLACE FUNCTION rt_ts(p_t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(p_t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_trunc('second', p_t) = p_t THEN ''
                ELSE to_char(p_t AT TIME ZONE 'UTC', '.MS') END
        || 'Z'
$$;

CREATE OR REPLACE FUNCTION rt_slot_json(p_s rt_slots) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', p_s.id::text, 'service_id', p_s.service_id::text,
        'vendor_id', p_s.vendor_id::text,
        'starts_at', rt_ts(p_s.starts_at), 'ends_at', rt_ts(p_s.ends_at),
        'capacity', p_s.capacity, 'booked', p_s.booked, 'held', p_s.held,
        'available', p_s.capacity - p_s.booked - p_s.held, 'version', p_s.version)
$$;

CREATE OR REPLACE FUNCTION rt_booking_json(p_r rt_reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', p_r.id::text, 'slot_id', p_r.slot_id::text, 'customer_id', p_r.customer_id,
        'quantity', p_r.quantity, 'status', p_r.status, 'created_at', rt_ts(p_r.created_at))
$$;

CREATE OR REPLACE FUNCTION rt_hold_json(p_r rt_reservations) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'id', p_r.id::text, 'slot_id', p_r.slot_id::text, 'quantity', p_r.quantity,
        'expires_at', rt_ts(p_r.expires_at))
$$;

-- True when a live reservation of an exclusive service overlaps [p_starts, p_ends).
-- Written with the same expressions and predicate as rt_reservations_no_overlap so the
-- planner answers it from that constraint's GiST index.
CREATE OR REPLACE FUNCTION rt_exclusive_busy(p_service_key bigint, p_starts timestamptz,
                                             p_ends timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM rt_reservations r
        WHERE int8range(r.service_key, r.service_key, '[]')
                  && int8range(p_service_key, p_service_key, '[]')
          AND tstzrange(r.starts_at, r.ends_at) && tstzrange(p_starts, p_ends)
          AND r.exclusive
          AND ((r.kind = 'hold' AND r.status = 'active')
               OR (r.kind = 'booking' AND r.status = 'confirmed')))
$$;

-- Up to 5 slots of the same service with at least p_quantity available, nearest in start
-- time to p_slot. Two short index scans (before, after) keep it cheap on a hot slot.
CREATE OR REPLACE FUNCTION rt_alternatives(p_slot rt_slots, p_quantity integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(rt_slot_json(a.s) ORDER BY a.distance, (a.s).starts_at),
                    '[]'::jsonb)
    FROM (
        SELECT c.s, abs(extract(epoch FROM (c.s).starts_at - p_slot.starts_at)) AS distance
        FROM (
            (SELECT s FROM rt_slots s
             WHERE s.service_id = p_slot.service_id AND s.starts_at >= p_slot.starts_at
               AND s.id <> p_slot.id AND s.capacity - s.booked - s.held >= p_quantity
               AND NOT (s.exclusive AND rt_exclusive_busy(s.service_key, s.starts_at, s.ends_at))
             ORDER BY s.starts_at LIMIT 5)
            UNION ALL
            (SELECT s FROM rt_slots s
             WHERE s.service_id = p_slot.service_id AND s.starts_at < p_slot.starts_at
               AND s.capacity - s.booked - s.held >= p_quantity
               AND NOT (s.exclusive AND rt_exclusive_busy(s.service_key, s.starts_at, s.ends_at))
             ORDER BY s.starts_at DESC LIMIT 5)
        ) c
        ORDER BY distance, (c.s).starts_at
        LIMIT 5
    ) a
$$;

-- Rings the doorbell at most once per sequencer drain: a NOTIFY serializes commits on a
-- cluster-wide lock (docs/design-notes.md), so the notification rate must not follow the booking rate.
-- SKIP LOCKED: if another transaction holds the doorbell row it is ringing right now, and
-- waiting for its commit would queue every concurrent booking behind it.
CREATE OR REPLACE FUNCTION rt_ring() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT d.rung FROM rt_doorbell d WHERE d.id = 1) THEN
        UPDATE rt_doorbell SET rung = true
        WHERE id = (SELECT d.id FROM rt_doorbell d WHERE d.id = 1 AND NOT d.rung
                    FOR UPDATE SKIP LOCKED);
        IF FOUND THEN
            PERFORM pg_notify('rt_doorbell', '');
        END IF;
    END IF;
END $$;

-- The audit row and the event row of one change (or one lost race), then the doorbell.
CREATE OR REPLACE FUNCTION rt_record(p_action text, p_kind text, p_slot rt_slots,
                                     p_reservation_id uuid, p_customer_id text,
                                     p_quantity integer, p_alternatives jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_slot_json jsonb := rt_slot_json(p_slot);
BEGIN
    INSERT INTO rt_audit (action, outcome, slot_id, reservation_id, customer_id, quantity, version)
    VALUES (p_action, CASE WHEN p_kind = 'conflict' THEN 'conflict' ELSE 'ok' END,
            p_slot.id, p_reservation_id, p_customer_id, p_quantity, p_slot.version);
    INSERT INTO rt_events (kind, slot_id, service_id, vendor_id, version, quantity, slot, alternatives)
    VALUES (p_kind, p_slot.id, p_slot.service_id, p_slot.vendor_id, p_slot.version,
            coalesce(p_quantity, 0), v_slot_json, p_alternatives);
    PERFORM rt_ring();
    RETURN v_slot_json;
END $$;

-- A lost race is committed, not raised: an audit row and a conflict event, so that it can be
-- broadcast and optimistic UIs roll back.
CREATE OR REPLACE FUNCTION rt_conflict(p_action text, p_slot rt_slots, p_quantity integer,
                                       p_customer_id text, p_reason text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_alternatives jsonb := rt_alternatives(p_slot, p_quantity);
    v_slot_json jsonb;
BEGIN
    v_slot_json := rt_record(p_action, 'conflict', p_slot, NULL, p_customer_id, p_quantity,
                             v_alternatives);
    RETURN jsonb_build_object('outcome', 'conflict', 'reason', p_reason, 'slot', v_slot_json,
                              'alternatives', v_alternatives);
END $$;

-- rt_take: books or holds p_quantity units of a slot.
-- Race prevented: two customers taking the last unit. The slot's row lock serializes them;
-- on exclusive services the service's row lock serializes the overlap check with the insert.
-- CHECK (booked + held <= capacity) and the exclusion constraint back this up on every path.
-- Lock order: service row (exclusive only) -> slot row -> doorbell.
CREATE OR REPLACE FUNCTION rt_take(p_kind text, p_slot_id uuid, p_quantity integer,
                                   p_customer_id text, p_ttl_seconds integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_slot rt_slots%ROWTYPE;
    v_res rt_reservations%ROWTYPE;
    v_action text := CASE WHEN p_kind = 'hold' THEN 'hold' ELSE 'book' END;
BEGIN
    IF p_quantity IS NULL OR p_quantity < 1 THEN
        RETURN jsonb_build_object('outcome', 'invalid', 'field', 'quantity',
                                  'message', 'must be an integer >= 1');
    END IF;
    -- Losers leave on an unlocked read: on a full hot slot they never queue for its lock, so
    -- a storm of clicks costs one index read and two inserts each.
    SELECT * INTO v_slot FROM rt_slots WHERE id = p_slot_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'slot_not_found');
    END IF;
    IF v_slot.capacity - v_slot.booked - v_slot.held < p_quantity THEN
        RETURN rt_conflict(v_action, v_slot, p_quantity, p_customer_id, 'capacity');
    END IF;
    IF v_slot.exclusive THEN
        PERFORM 1 FROM rt_services WHERE id = v_slot.service_id FOR NO KEY UPDATE;
    END IF;
    SELECT * INTO v_slot FROM rt_slots WHERE id = p_slot_id FOR UPDATE;
    IF v_slot.capacity - v_slot.booked - v_slot.held < p_quantity THEN
        RETURN rt_conflict(v_action, v_slot, p_quantity, p_customer_id, 'capacity');
    END IF;
    IF v_slot.exclusive AND rt_exclusive_busy(v_slot.service_key, v_slot.starts_at, v_slot.ends_at) THEN
        RETURN rt_conflict(v_action, v_slot, p_quantity, p_customer_id, 'overlap');
    END IF;

    IF p_kind = 'hold' THEN
        UPDATE rt_slots SET held = held + p_quantity, version = version + 1, updated_at = now()
        WHERE id = p_slot_id RETURNING * INTO v_slot;
    ELSE
        UPDATE rt_slots SET booked = booked + p_quantity, version = version + 1, updated_at = now()
        WHERE id = p_slot_id RETURNING * INTO v_slot;
    END IF;
    INSERT INTO rt_reservations (kind, slot_id, service_key, exclusive, starts_at, ends_at,
                                 customer_id, quantity, status, expires_at)
    VALUES (p_kind, v_slot.id, v_slot.service_key, v_slot.exclusive, v_slot.starts_at,
            v_slot.ends_at, p_customer_id, p_quantity,
            CASE WHEN p_kind = 'hold' THEN 'active' ELSE 'confirmed' END,
            CASE WHEN p_kind = 'hold' THEN now() + make_interval(secs => p_ttl_seconds) END)
    RETURNING * INTO v_res;

    IF p_kind = 'hold' THEN
        RETURN jsonb_build_object('outcome', 'held', 'hold', rt_hold_json(v_res),
            'slot', rt_record('hold', 'held', v_slot, v_res.id, p_customer_id, p_quantity));
    END IF;
    RETURN jsonb_build_object('outcome', 'booked', 'booking', rt_booking_json(v_res),
        'slot', rt_record('book', 'booked', v_slot, v_res.id, p_customer_id, p_quantity));
END $$;

-- rt_confirm_hold: turns an active hold into a booking of the same units.
-- Race prevented: confirming a hold the sweeper is expiring at the same moment (both lock the
-- hold row first; whoever comes second sees the new status).
-- Lock order: hold row -> slot row -> doorbell. p_owner NULL skips the ownership check.
CREATE OR REPLACE FUNCTION rt_confirm_hold(p_hold_id uuid, p_slot_id uuid, p_quantity integer,
                                           p_customer_id text, p_owner text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_hold rt_reservations%ROWTYPE;
    v_slot rt_slots%ROWTYPE;
    v_booking rt_reservations%ROWTYPE;
BEGIN
    SELECT * INTO v_hold FROM rt_reservations
    WHERE id = p_hold_id AND kind = 'hold' FOR UPDATE;
    IF NOT FOUND OR v_hold.slot_id <> p_slot_id
       OR (p_owner IS NOT NULL AND v_hold.customer_id IS DISTINCT FROM p_owner) THEN
        RETURN jsonb_build_object('outcome', 'hold_not_found');
    END IF;
    IF p_quantity IS NOT NULL AND p_quantity <> v_hold.quantity THEN
        RETURN jsonb_build_object('outcome', 'invalid', 'field', 'quantity',
                                  'message', 'must equal the quantity of the hold');
    END IF;
    SELECT * INTO v_slot FROM rt_slots WHERE id = v_hold.slot_id FOR UPDATE;
    IF v_hold.status <> 'active' THEN
        RETURN jsonb_build_object('outcome', 'hold_expired', 'hold_status', v_hold.status,
                                  'slot', rt_slot_json(v_slot));
    END IF;
    IF v_hold.expires_at <= clock_timestamp() THEN
        -- Expire it here rather than wait for the sweeper: the customer is told at once and
        -- the units are back in the same commit.
        UPDATE rt_reservations SET status = 'expired', updated_at = now() WHERE id = v_hold.id;
        UPDATE rt_slots SET held = held - v_hold.quantity, version = version + 1, updated_at = now()
        WHERE id = v_slot.id RETURNING * INTO v_slot;
        RETURN jsonb_build_object('outcome', 'hold_expired', 'hold_status', 'expired',
            'slot', rt_record('expire', 'expired', v_slot, v_hold.id, v_hold.customer_id,
                              v_hold.quantity));
    END IF;

    UPDATE rt_reservations SET status = 'confirmed', updated_at = now() WHERE id = v_hold.id;
    UPDATE rt_slots SET held = held - v_hold.quantity, booked = booked + v_hold.quantity,
                        version = version + 1, updated_at = now()
    WHERE id = v_slot.id RETURNING * INTO v_slot;
    INSERT INTO rt_reservations (kind, slot_id, service_key, exclusive, starts_at, ends_at,
                                 customer_id, quantity, status, hold_id)
    VALUES ('booking', v_slot.id, v_slot.service_key, v_slot.exclusive, v_slot.starts_at,
            v_slot.ends_at, coalesce(v_hold.customer_id, p_customer_id), v_hold.quantity,
            'confirmed', v_hold.id)
    RETURNING * INTO v_booking;
    RETURN jsonb_build_object('outcome', 'booked', 'booking', rt_booking_json(v_booking),
        'slot', rt_record('confirm', 'booked', v_slot, v_booking.id, v_booking.customer_id,
                          v_booking.quantity));
END $$;

-- rt_book: the one entry point for a booking, with or without a hold, with or without an
-- Idempotency-Key. Race prevented: concurrent replays of one key. The key's primary key makes
-- the second insert wait for the first transaction and then find its stored result; no
-- check-then-insert window exists.
CREATE OR REPLACE FUNCTION rt_book(p_slot_id uuid, p_quantity integer, p_customer_id text,
                                   p_hold_id uuid, p_owner text, p_idem_scope text,
                                   p_idem_key text, p_idem_hash text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_stored rt_idempotency_keys%ROWTYPE;
    v_result jsonb;
BEGIN
    IF p_idem_key IS NOT NULL THEN
        INSERT INTO rt_idempotency_keys (scope, key, request_hash)
        VALUES (p_idem_scope, p_idem_key, p_idem_hash)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_stored FROM rt_idempotency_keys
            WHERE scope = p_idem_scope AND key = p_idem_key;
            IF v_stored.request_hash <> p_idem_hash THEN
                RETURN jsonb_build_object('outcome', 'idempotency_key_reused');
            END IF;
            RETURN v_stored.result;
        END IF;
    END IF;

    IF p_hold_id IS NOT NULL THEN
        v_result := rt_confirm_hold(p_hold_id, p_slot_id, p_quantity, p_customer_id, p_owner);
    ELSE
        v_result := rt_take('booking', p_slot_id, coalesce(p_quantity, 1), p_customer_id, NULL);
    END IF;

    IF p_idem_key IS NOT NULL THEN
        UPDATE rt_idempotency_keys SET result = v_result
        WHERE scope = p_idem_scope AND key = p_idem_key;
    END IF;
    RETURN v_result;
END $$;

CREATE OR REPLACE FUNCTION rt_hold(p_slot_id uuid, p_quantity integer, p_customer_id text,
                                   p_ttl_seconds integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ttl_seconds IS NULL OR p_ttl_seconds NOT BETWEEN 1 AND 3600 THEN
        RETURN jsonb_build_object('outcome', 'invalid', 'field', 'ttl_seconds',
                                  'message', 'must be an integer from 1 to 3600');
    END IF;
    RETURN rt_take('hold', p_slot_id, p_quantity, p_customer_id, p_ttl_seconds);
END $$;

-- rt_release: gives the units of an active hold back. Releasing a hold that is no longer
-- active changes nothing and reports the slot as it is.
-- Lock order: hold row -> slot row -> doorbell.
CREATE OR REPLACE FUNCTION rt_release(p_hold_id uuid, p_owner text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_hold rt_reservations%ROWTYPE;
    v_slot rt_slots%ROWTYPE;
BEGIN
    SELECT * INTO v_hold FROM rt_reservations
    WHERE id = p_hold_id AND kind = 'hold' FOR UPDATE;
    IF NOT FOUND OR (p_owner IS NOT NULL AND v_hold.customer_id IS DISTINCT FROM p_owner) THEN
        RETURN jsonb_build_object('outcome', 'hold_not_found');
    END IF;
    SELECT * INTO v_slot FROM rt_slots WHERE id = v_hold.slot_id FOR UPDATE;
    IF v_hold.status <> 'active' THEN
        RETURN jsonb_build_object('outcome', 'released', 'changed', false,
                                  'slot', rt_slot_json(v_slot));
    END IF;
    UPDATE rt_reservations SET status = 'released', updated_at = now() WHERE id = v_hold.id;
    UPDATE rt_slots SET held = held - v_hold.quantity, version = version + 1, updated_at = now()
    WHERE id = v_slot.id RETURNING * INTO v_slot;
    RETURN jsonb_build_object('outcome', 'released', 'changed', true,
        'slot', rt_record('release', 'released', v_slot, v_hold.id, v_hold.customer_id,
                          v_hold.quantity));
END $$;

-- rt_cancel: cancels a confirmed booking. Cancelling twice changes nothing the second time.
-- Race prevented: two cancels of one booking both giving units back (the booking row lock
-- makes the second see 'cancelled').
-- Lock order: booking row -> slot row -> doorbell.
CREATE OR REPLACE FUNCTION rt_cancel(p_booking_id uuid, p_owner text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_booking rt_reservations%ROWTYPE;
    v_slot rt_slots%ROWTYPE;
BEGIN
    SELECT * INTO v_booking FROM rt_reservations
    WHERE id = p_booking_id AND kind = 'booking' FOR UPDATE;
    IF NOT FOUND OR (p_owner IS NOT NULL AND v_booking.customer_id IS DISTINCT FROM p_owner) THEN
        RETURN jsonb_build_object('outcome', 'booking_not_found');
    END IF;
    SELECT * INTO v_slot FROM rt_slots WHERE id = v_booking.slot_id FOR UPDATE;
    IF v_booking.status = 'cancelled' THEN
        RETURN jsonb_build_object('outcome', 'cancelled', 'changed', false,
            'booking', rt_booking_json(v_booking), 'slot', rt_slot_json(v_slot));
    END IF;
    UPDATE rt_reservations SET status = 'cancelled', updated_at = now()
    WHERE id = v_booking.id RETURNING * INTO v_booking;
    UPDATE rt_slots SET booked = booked - v_booking.quantity, version = version + 1,
                        updated_at = now()
    WHERE id = v_slot.id RETURNING * INTO v_slot;
    RETURN jsonb_build_object('outcome', 'cancelled', 'changed', true,
        'booking', rt_booking_json(v_booking),
        'slot', rt_record('cancel', 'cancelled', v_slot, v_booking.id, v_booking.customer_id,
                          v_booking.quantity));
END $$;

-- rt_expire_holds: gives back the units of up to p_limit holds whose time is up, one event
-- each. Race prevented: two server processes expiring the same hold (SKIP LOCKED: each hold
-- is claimed by one sweeper; a hold being confirmed right now is skipped, not waited for).
-- Lock order: hold row -> slot row -> doorbell.
CREATE OR REPLACE FUNCTION rt_expire_holds(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_hold rt_reservations%ROWTYPE;
    v_slot rt_slots%ROWTYPE;
    v_count integer := 0;
BEGIN
    FOR v_hold IN
        SELECT * FROM rt_reservations
        WHERE kind = 'hold' AND status = 'active' AND expires_at <= clock_timestamp()
        ORDER BY expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE rt_reservations SET status = 'expired', updated_at = now() WHERE id = v_hold.id;
        UPDATE rt_slots SET held = held - v_hold.quantity, version = version + 1,
                            updated_at = now()
        WHERE id = v_hold.slot_id RETURNING * INTO v_slot;
        PERFORM rt_record('expire', 'expired', v_slot, v_hold.id, v_hold.customer_id,
                          v_hold.quantity);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END $$;

-- rt_set_capacity: changes a slot's capacity, never below what is booked and held.
-- Lock order: slot row -> doorbell.
CREATE OR REPLACE FUNCTION rt_set_capacity(p_slot_id uuid, p_capacity integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_slot rt_slots%ROWTYPE;
BEGIN
    SELECT * INTO v_slot FROM rt_slots WHERE id = p_slot_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'slot_not_found');
    END IF;
    IF p_capacity < v_slot.booked + v_slot.held THEN
        RETURN jsonb_build_object('outcome', 'capacity_below_usage', 'slot', rt_slot_json(v_slot));
    END IF;
    IF p_capacity = v_slot.capacity THEN
        RETURN jsonb_build_object('outcome', 'changed', 'changed', false, 'slot', rt_slot_json(v_slot));
    END IF;
    UPDATE rt_slots SET capacity = p_capacity, version = version + 1, updated_at = now()
    WHERE id = p_slot_id RETURNING * INTO v_slot;
    RETURN jsonb_build_object('outcome', 'changed', 'changed', true,
        'slot', rt_record('set_capacity', 'changed', v_slot, NULL, NULL, p_capacity));
END $$;

-- rt_create_slots: creates slots of a service from [{starts_at, ends_at, capacity}], each at
-- version 1 with its 'created' event.
CREATE OR REPLACE FUNCTION rt_create_slots(p_service_id uuid, p_slots jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_service rt_services%ROWTYPE;
    v_item record;
    v_slot rt_slots%ROWTYPE;
    v_out jsonb := '[]'::jsonb;
BEGIN
    SELECT * INTO v_service FROM rt_services WHERE id = p_service_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'service_not_found');
    END IF;
    FOR v_item IN
        SELECT * FROM jsonb_to_recordset(p_slots)
            AS x(starts_at timestamptz, ends_at timestamptz, capacity integer)
    LOOP
        INSERT INTO rt_slots (service_id, service_key, exclusive, vendor_id, starts_at, ends_at,
                              capacity)
        VALUES (v_service.id, v_service.key, v_service.exclusive, v_service.vendor_id,
                v_item.starts_at, v_item.ends_at, v_item.capacity)
        RETURNING * INTO v_slot;
        v_out := v_out || jsonb_build_array(
            rt_record('create_slot', 'created', v_slot, NULL, NULL, v_slot.capacity));
    END LOOP;
    RETURN jsonb_build_object('outcome', 'created', 'slots', v_out);
END $$;

-- rt_sequence_events: numbers every committed, unnumbered event in commit order.
-- Race prevented: a reader resuming after position N skipping an event that commits later
-- with a smaller id. Positions are handed out only here, by one transaction at a time (the
-- advisory lock), to rows that are already committed; so a position becomes visible only
-- after every smaller one. Within a batch, id order is version order per slot, because
-- versions are assigned under the slot's row lock.
-- Clearing the doorbell in the same transaction lets the next booking ring again.
CREATE OR REPLACE FUNCTION rt_sequence_events(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
    v_count integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7262454, 1);
    UPDATE rt_doorbell SET rung = false WHERE id = 1 AND rung;
    SELECT last_pos INTO v_last FROM rt_sequencer WHERE id = 1;
    UPDATE rt_events e SET pos = v_last + b.rn
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn
          FROM rt_events WHERE pos IS NULL ORDER BY id LIMIT p_limit) b
    WHERE e.id = b.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        UPDATE rt_sequencer SET last_pos = v_last + v_count WHERE id = 1;
        PERFORM pg_notify('rt_events', (v_last + v_count)::text);
    END IF;
    RETURN v_count;
END $$;

-- rt_prune_events: deletes numbered events older than p_keep (at most 50,000 per call) and
-- records the highest pruned position: a cursor at or below it gets a snapshot instead.
CREATE OR REPLACE FUNCTION rt_prune_events(p_keep interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_state rt_sequencer%ROWTYPE;
    v_cut bigint;
    v_count integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7262454, 1);
    SELECT * INTO v_state FROM rt_sequencer WHERE id = 1;
    SELECT e.pos - 1 INTO v_cut FROM rt_events e
    WHERE e.pos > v_state.pruned_pos AND e.created_at >= now() - p_keep
    ORDER BY e.pos LIMIT 1;
    v_cut := least(coalesce(v_cut, v_state.last_pos), v_state.pruned_pos + 50000);
    IF v_cut <= v_state.pruned_pos THEN
        RETURN 0;
    END IF;
    DELETE FROM rt_events WHERE pos > v_state.pruned_pos AND pos <= v_cut;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE rt_sequencer SET pruned_pos = v_cut WHERE id = 1;
    RETURN v_count;
END $$;

-- Idempotency keys are kept 24 hours, like Stripe's.
CREATE OR REPLACE FUNCTION rt_prune_idempotency_keys() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    DELETE FROM rt_idempotency_keys WHERE created_at < now() - interval '24 hours';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
