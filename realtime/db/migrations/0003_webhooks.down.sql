-- Rolls back 0003: the webhook tables go (with their endpoints and deliveries), the events lose
-- their reservation and customer columns, and rt_record and rt_prune_events are 0002's again.
DROP TABLE IF EXISTS rt_webhook_deliveries;
DROP TABLE IF EXISTS rt_webhooks;

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

ALTER TABLE rt_events DROP COLUMN IF EXISTS customer_id;
ALTER TABLE rt_events DROP COLUMN IF EXISTS reservation_id;
