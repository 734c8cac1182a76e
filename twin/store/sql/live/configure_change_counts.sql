-- Set the zone and state fields; when they differ from what the counts were made with
-- (or there were none), count the whole log again. Returns whether it recounted.
CREATE OR REPLACE FUNCTION twin.configure_change_counts(zone text, state_fields jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM timezone(zone, now());  -- an unknown zone fails here, before anything changes
    IF EXISTS (SELECT FROM twin.change_counts_basis b
                WHERE b.zone = configure_change_counts.zone
                  AND b.state_fields = configure_change_counts.state_fields) THEN
        RETURN false;
    END IF;
    INSERT INTO twin.change_counts_basis (zone, state_fields)
    VALUES (configure_change_counts.zone, configure_change_counts.state_fields)
    ON CONFLICT (only_row) DO UPDATE SET zone = EXCLUDED.zone,
                                         state_fields = EXCLUDED.state_fields;
    TRUNCATE twin.change_counts;
    PERFORM twin.add_counts(ARRAY(SELECT id FROM twin.changes));
    RETURN true;
END $$;
