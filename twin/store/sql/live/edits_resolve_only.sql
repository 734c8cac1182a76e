-- Kept as received: the application may record an edit and later its resolution, nothing else.
CREATE OR REPLACE FUNCTION twin.edits_resolve_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - '{resolved_at,resolved_by,resolution}'::text[])
       IS DISTINCT FROM (to_jsonb(OLD) - '{resolved_at,resolved_by,resolution}'::text[])
       OR OLD.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'a received edit is kept as it came; only an open conflict may be resolved'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
