-- Rolls back 0005: the listener calls rt_sequence_events and reads rt_events separately again.
DROP FUNCTION IF EXISTS rt_drain_events(bigint, integer);
