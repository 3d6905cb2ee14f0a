-- 0006 webhook audit: registering, changing and deleting a webhook endpoint changes where the
-- server sends its events, so each is on the audit trail (rt_audit) like a booking: who (the
-- admin's token subject), when, in which request, and what, written in the change's own
-- transaction by a trigger, so that a change by raw SQL is on the trail too (naming its
-- database role, as 0004's defaults do). The server sets who and which request the way
-- 0004's overloads do: set_config(..., true) in the same transaction (realtime/webhooks/store.py).
--
-- Never the signing secret: a row says that the secret changed, not what it is. Nor the URL's
-- query string or fragment (some receivers put a token there) or user info: `detail.url` is
-- the rest, enough to tell where the events went.
--
-- Updates are audited only when what an admin configures changes (url, events, vendor_id,
-- secret): the dispatcher's bookkeeping on the same row (cursor, lease, attempts, status) is
-- not an admin change and happens on every delivery.
-- Idempotent: every statement may run again on a database that already has it.

CREATE OR REPLACE FUNCTION rt_webhook_audit_url(p_url text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(split_part(split_part(p_url, '#', 1), '?', 1),
                          '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1')
$$;

CREATE OR REPLACE FUNCTION rt_audit_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_row rt_webhooks%ROWTYPE;
    v_changed text[] := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := OLD;
    ELSE
        v_row := NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.url IS DISTINCT FROM NEW.url THEN v_changed := v_changed || 'url'::text; END IF;
        IF OLD.events IS DISTINCT FROM NEW.events THEN v_changed := v_changed || 'events'::text; END IF;
        IF OLD.vendor_id IS DISTINCT FROM NEW.vendor_id THEN
            v_changed := v_changed || 'vendor_id'::text;
        END IF;
        IF OLD.secret IS DISTINCT FROM NEW.secret THEN v_changed := v_changed || 'secret'::text; END IF;
    END IF;
    INSERT INTO rt_audit (action, outcome, detail)
    VALUES (CASE TG_OP WHEN 'INSERT' THEN 'create_webhook' WHEN 'DELETE' THEN 'delete_webhook'
                       ELSE 'update_webhook' END,
            'ok',
            jsonb_strip_nulls(jsonb_build_object(
                'webhook_id', v_row.id::text,
                'url', rt_webhook_audit_url(v_row.url),
                'events', to_jsonb(v_row.events),
                'vendor_id', v_row.vendor_id::text,
                'changed', CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(v_changed) END)));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS rt_webhooks_audit ON rt_webhooks;
CREATE TRIGGER rt_webhooks_audit AFTER INSERT OR DELETE ON rt_webhooks
    FOR EACH ROW EXECUTE FUNCTION rt_audit_webhook();
DROP TRIGGER IF EXISTS rt_webhooks_change_audit ON rt_webhooks;
CREATE TRIGGER rt_webhooks_change_audit AFTER UPDATE OF url, events, vendor_id, secret ON rt_webhooks
    FOR EACH ROW
    WHEN ((OLD.url, OLD.events, OLD.vendor_id, OLD.secret)
          IS DISTINCT FROM (NEW.url, NEW.events, NEW.vendor_id, NEW.secret))
    EXECUTE FUNCTION rt_audit_webhook();
