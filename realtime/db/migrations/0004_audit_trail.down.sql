-- Rolls back 0004: the overloads that take the actor and request id go, with the triggers that
-- audit new vendors and services, and so do the audit rows' actor and request_id columns (what
-- they recorded is lost; the rows stay). 0002's functions stay.
DROP FUNCTION IF EXISTS rt_create_service(uuid, text, boolean, text, text);
DROP FUNCTION IF EXISTS rt_create_vendor(text, text, text);
DROP TRIGGER IF EXISTS rt_services_audit ON rt_services;
DROP TRIGGER IF EXISTS rt_vendors_audit ON rt_vendors;
DROP FUNCTION IF EXISTS rt_audit_created();
DROP FUNCTION IF EXISTS rt_create_slots(uuid, jsonb, text, text);
DROP FUNCTION IF EXISTS rt_set_capacity(uuid, integer, text, text);
DROP FUNCTION IF EXISTS rt_expire_holds(integer, text, text);
DROP FUNCTION IF EXISTS rt_cancel(uuid, text, text, text);
DROP FUNCTION IF EXISTS rt_release(uuid, text, text, text);
DROP FUNCTION IF EXISTS rt_hold(uuid, integer, text, integer, text, text);
DROP FUNCTION IF EXISTS rt_book(uuid, integer, text, uuid, text, text, text, text, text, text);
ALTER TABLE rt_audit DROP COLUMN IF EXISTS request_id;
ALTER TABLE rt_audit DROP COLUMN IF EXISTS actor;
