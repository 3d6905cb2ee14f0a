-- rt_drain_events: the sequencer and the event reader in one call, for the listener of a
-- process that reads the primary. Numbers what is committed (rt_sequence_events, unchanged:
-- same lock, same doorbell, same one NOTIFY per non-empty drain) and returns, in the same
-- transaction, the events after p_after, the caller's last position: the call is answered
-- only once its commit is durable, so nothing it returns can be renumbered. Saves the reader's
-- own round trip (and a wait for a pooled connection) between a drain and the dispatch.
-- The first row carries how many events this call numbered, or -1 when another sequencer call
-- held the lock (another process's drain, the pruner): the call does not wait for it, so that
-- it never holds the caller's LISTEN connection in a lock queue; what that call numbers is
-- announced by its NOTIFY, and the caller drains again a little later for the rest. With no
-- events to return, that row is the only one and its event columns are NULL.
CREATE OR REPLACE FUNCTION rt_drain_events(p_after bigint, p_limit integer)
RETURNS TABLE (numbered integer, pos bigint, id bigint, kind text, slot_id text,
               service_id text, vendor_id text, version bigint, quantity integer,
               slot_json text, alternatives_json text)
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := -1;
BEGIN
    -- rt_sequence_events takes the same lock again: advisory locks are reentrant.
    IF pg_try_advisory_xact_lock(7262454, 1) THEN
        v_count := rt_sequence_events(p_limit);
    END IF;
    -- A new snapshot (READ COMMITTED, a volatile function): it sees the positions just given.
    RETURN QUERY
        SELECT v_count, e.pos, e.id, e.kind, e.slot_id::text, e.service_id::text,
               e.vendor_id::text, e.version, e.quantity, e.slot::text, e.alternatives::text
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (
            SELECT * FROM rt_events r WHERE r.pos > p_after ORDER BY r.pos LIMIT p_limit) e
            ON true
        ORDER BY e.pos;
END $$;
