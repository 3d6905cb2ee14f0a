-- 0003 webhooks: endpoints that follow the event log with a cursor of their own, what was
-- delivered to them, and events that carry the reservation and customer a backend needs.
--
-- Who delivers: a server process leases an endpoint (lease_until, one UPDATE under the row's
-- lock, so two processes can never both hold it) for longer than one delivery attempt may
-- take, and renews it while it works; an endpoint's events therefore go out one at a time, in
-- log order, from one process at a time. Lock order: webhook row only (no function here
-- touches a slot or a reservation).

ALTER TABLE rt_events ADD COLUMN IF NOT EXISTS reservation_id uuid;
ALTER TABLE rt_events ADD COLUMN IF NOT EXISTS customer_id text;

-- rt_record as in 0002, and the event also names the reservation and the customer.
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
    INSERT INTO rt_events (kind, slot_id, service_id, vendor_id, version, quantity, slot,
                           alternatives, reservation_id, customer_id)
    VALUES (p_kind, p_slot.id, p_slot.service_id, p_slot.vendor_id, p_slot.version,
            coalesce(p_quantity, 0), v_slot_json, p_alternatives, p_reservation_id,
            p_customer_id);
    PERFORM rt_ring();
    RETURN v_slot_json;
END $$;

CREATE TABLE IF NOT EXISTS rt_webhooks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url              text NOT NULL CHECK (length(url) <= 2048),
    events           text[] NOT NULL CHECK (cardinality(events) > 0),
    vendor_id        uuid REFERENCES rt_vendors (id) ON DELETE CASCADE,
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Every event at or below this log position is done for this endpoint (delivered, or not
    -- one it asked for). It starts at the log's end: an endpoint gets what happens after it.
    cursor           bigint NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason  text,
    -- The event after the cursor: failed attempts so far, since when, and when to try again.
    attempts         integer NOT NULL DEFAULT 0,
    failing_since    timestamptz,
    next_attempt_at  timestamptz,
    last_status_code integer,
    lease_owner      text,
    lease_until      timestamptz
);
CREATE INDEX IF NOT EXISTS rt_webhooks_due ON rt_webhooks (next_attempt_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS rt_webhook_deliveries (
    webhook_id       uuid NOT NULL REFERENCES rt_webhooks (id) ON DELETE CASCADE,
    event_pos        bigint NOT NULL,
    event_id         text NOT NULL,
    type             text NOT NULL,
    status           text NOT NULL CHECK (status IN ('delivered', 'retrying', 'failed')),
    attempts         integer NOT NULL,
    last_status_code integer,
    next_attempt_at  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, event_pos)
);

-- rt_prune_events as in 0002, except that it keeps what an active webhook endpoint has not
-- yet received, for up to three days: past that, the endpoint is disabled by its dispatcher
-- (its cursor falls below pruned_pos) and the log is pruned as usual.
CREATE OR REPLACE FUNCTION rt_prune_events(p_keep interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_state rt_sequencer%ROWTYPE;
    v_cut bigint;
    v_webhooks bigint;
    v_stale bigint;
    v_count integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7262454, 1);
    SELECT * INTO v_state FROM rt_sequencer WHERE id = 1;
    SELECT e.pos - 1 INTO v_cut FROM rt_events e
    WHERE e.pos > v_state.pruned_pos AND e.created_at >= now() - p_keep
    ORDER BY e.pos LIMIT 1;
    v_cut := least(coalesce(v_cut, v_state.last_pos), v_state.pruned_pos + 50000);
    SELECT min(w.cursor) INTO v_webhooks FROM rt_webhooks w WHERE w.status = 'active';
    IF v_webhooks IS NOT NULL AND v_webhooks < v_cut THEN
        SELECT coalesce(max(e.pos), v_state.pruned_pos) INTO v_stale FROM rt_events e
        WHERE e.pos > v_state.pruned_pos AND e.pos <= v_cut
          AND e.created_at < now() - interval '3 days';
        v_cut := greatest(v_webhooks, v_stale);
    END IF;
    IF v_cut <= v_state.pruned_pos THEN
        RETURN 0;
    END IF;
    DELETE FROM rt_events WHERE pos > v_state.pruned_pos AND pos <= v_cut;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE rt_sequencer SET pruned_pos = v_cut WHERE id = 1;
    RETURN v_count;
END $$;
