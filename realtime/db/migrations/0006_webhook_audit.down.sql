-- Rolls back 0006: webhook changes are no longer audited. The audit rows already written stay
-- (create_webhook, update_webhook, delete_webhook), as 0004's rollback keeps its rows.
DROP TRIGGER IF EXISTS rt_webhooks_change_audit ON rt_webhooks;
DROP TRIGGER IF EXISTS rt_webhooks_audit ON rt_webhooks;
DROP FUNCTION IF EXISTS rt_audit_webhook();
DROP FUNCTION IF EXISTS rt_webhook_audit_url(text);
