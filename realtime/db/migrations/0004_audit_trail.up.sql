-- 0004 audit trail: every audit row names who made the change (the actor) and the request that
-- made it, so that an operator can answer "who did this, and in which request" for every row
-- `realtime check` matches to a change.
--
-- How the actor and the request id reach the row: the server calls the overloads below, which
-- take them as their last two parameters, store them in two transaction-local settings
-- (set_config(..., true): they end with the transaction) and call the function of 0002. The
-- audit columns default to those settings, so every audit row the transaction writes carries
-- them, whichever function writes it (rt_record, a conflict, an expiry inside a confirmation),
-- and no function of 0002 or 0003 had to be rewritten. A change made without them (raw SQL,
-- an older server during a rolling upgrade) is still attributed: to the database role
-- ("sql:<role>") and its transaction ("sql:<xid>").
-- Idempotent: every statement may run again on a database that already has it.

ALTER TABLE rt_audit ADD COLUMN IF NOT EXISTS actor text;
ALTER TABLE rt_audit ADD COLUMN IF NOT EXISTS request_id text;
-- Defaults set apart from ADD COLUMN: rows written before this migration keep NULL (nobody
-- knows who made them) instead of getting the migration's own role and transaction.
ALTER TABLE rt_audit ALTER COLUMN actor
    SET DEFAULT coalesce(nullif(current_setting('realtime.actor', true), ''), 'sql:' || session_user);
ALTER TABLE rt_audit ALTER COLUMN request_id
    SET DEFAULT coalesce(nullif(current_setting('realtime.request_id', true), ''),
                         'sql:' || txid_current()::text);

-- Each overload below sets who and which request for the rest of the calling transaction
-- with set_config in its own PERFORM, not through a shared helper function: calling one cost a
-- booking 27% more of PostgreSQL's time, the set_configs inline nothing measurable
-- (bench/auditcost.py).

CREATE OR REPLACE FUNCTION rt_book(p_slot_id uuid, p_quantity integer, p_customer_id text,
                                   p_hold_id uuid, p_owner text, p_idem_scope text,
                                   p_idem_key text, p_idem_hash text,
                                   p_actor text, p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_book(p_slot_id, p_quantity, p_customer_id, p_hold_id, p_owner, p_idem_scope,
                   p_idem_key, p_idem_hash);
END $$;

CREATE OR REPLACE FUNCTION rt_hold(p_slot_id uuid, p_quantity integer, p_customer_id text,
                                   p_ttl_seconds integer, p_actor text, p_request_id text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_hold(p_slot_id, p_quantity, p_customer_id, p_ttl_seconds);
END $$;

CREATE OR REPLACE FUNCTION rt_release(p_hold_id uuid, p_owner text, p_actor text,
                                      p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_release(p_hold_id, p_owner);
END $$;

CREATE OR REPLACE FUNCTION rt_cancel(p_booking_id uuid, p_owner text, p_actor text,
                                     p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_cancel(p_booking_id, p_owner);
END $$;

CREATE OR REPLACE FUNCTION rt_expire_holds(p_limit integer, p_actor text, p_request_id text)
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_expire_holds(p_limit);
END $$;

CREATE OR REPLACE FUNCTION rt_set_capacity(p_slot_id uuid, p_capacity integer, p_actor text,
                                           p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_set_capacity(p_slot_id, p_capacity);
END $$;

CREATE OR REPLACE FUNCTION rt_create_slots(p_service_id uuid, p_slots jsonb, p_actor text,
                                           p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    RETURN rt_create_slots(p_service_id, p_slots);
END $$;

-- Vendors and services are changes too. A trigger writes their audit row, so that a vendor or
-- service created by raw SQL is on the trail as well (naming the database role); the row names
-- the new id in `detail`, as they have no slot. Not on any booking's path.
CREATE OR REPLACE FUNCTION rt_audit_created() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'rt_vendors' THEN
        INSERT INTO rt_audit (action, outcome, detail)
        VALUES ('create_vendor', 'ok', jsonb_build_object('vendor_id', NEW.id::text));
    ELSE
        INSERT INTO rt_audit (action, outcome, detail)
        VALUES ('create_service', 'ok', jsonb_build_object('service_id', NEW.id::text,
                                                           'vendor_id', NEW.vendor_id::text));
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS rt_vendors_audit ON rt_vendors;
CREATE TRIGGER rt_vendors_audit AFTER INSERT ON rt_vendors
    FOR EACH ROW EXECUTE FUNCTION rt_audit_created();
DROP TRIGGER IF EXISTS rt_services_audit ON rt_services;
CREATE TRIGGER rt_services_audit AFTER INSERT ON rt_services
    FOR EACH ROW EXECUTE FUNCTION rt_audit_created();

CREATE OR REPLACE FUNCTION rt_create_vendor(p_name text, p_actor text, p_request_id text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_vendor rt_vendors%ROWTYPE;
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    INSERT INTO rt_vendors (name) VALUES (p_name) RETURNING * INTO v_vendor;
    RETURN jsonb_build_object('id', v_vendor.id::text, 'name', v_vendor.name);
END $$;

-- NULL when the vendor does not exist.
CREATE OR REPLACE FUNCTION rt_create_service(p_vendor_id uuid, p_name text, p_exclusive boolean,
                                             p_actor text, p_request_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_service rt_services%ROWTYPE;
BEGIN
    PERFORM set_config('realtime.actor', coalesce(left(p_actor, 200), ''), true),
            set_config('realtime.request_id', coalesce(left(p_request_id, 200), ''), true);
    INSERT INTO rt_services (vendor_id, name, exclusive)
    SELECT id, p_name, p_exclusive FROM rt_vendors WHERE id = p_vendor_id
    RETURNING * INTO v_service;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('id', v_service.id::text, 'vendor_id', v_service.vendor_id::text,
                              'name', v_service.name, 'exclusive', v_service.exclusive);
END $$;
