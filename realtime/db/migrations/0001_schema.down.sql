-- Rolls back 0001: drops every table it created (data included).
DROP TABLE IF EXISTS rt_idempotency_keys;
DROP TABLE IF EXISTS rt_doorbell;
DROP TABLE IF EXISTS rt_sequencer;
DROP TABLE IF EXISTS rt_audit;
DROP TABLE IF EXISTS rt_events;
DROP TABLE IF EXISTS rt_reservations;
DROP TABLE IF EXISTS rt_slots;
DROP TABLE IF EXISTS rt_services;
DROP TABLE IF EXISTS rt_vendors;
