-- Listeners of the live feed (GET /changes/stream) hear of new changes when they commit; the
-- payload is the newest id, and they read what they missed from the log itself.
CREATE OR REPLACE FUNCTION twin.notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('twin_changes', (SELECT max(id)::text FROM new_changes));
    RETURN NULL;
END $$;
