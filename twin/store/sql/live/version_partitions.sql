-- A partition for each month (UTC) from since's to upto's that has none, holding the versions
-- of that month from the default partition. Returns how many it made. Attached, not created
-- as a partition: attaching locks readers of the table out only while the (empty or small)
-- default partition is checked.
CREATE OR REPLACE FUNCTION twin.version_partitions(since timestamptz, upto timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    first_day timestamp := date_trunc('month', since AT TIME ZONE 'UTC');
    month_start timestamptz;
    month_end timestamptz;
    part text;
    made integer := 0;
    replication text := current_setting('session_replication_role');
BEGIN
    WHILE first_day <= upto AT TIME ZONE 'UTC' LOOP
        month_start := first_day AT TIME ZONE 'UTC';
        month_end := (first_day + interval '1 month') AT TIME ZONE 'UTC';
        part := 'feature_versions_' || to_char(first_day, 'YYYY_MM');
        IF to_regclass(format('twin.%I', part)) IS NULL THEN
            EXECUTE format('CREATE TABLE twin.%I (LIKE twin.feature_versions INCLUDING DEFAULTS)',
                           part);
            -- a move, not a deletion: the refusing triggers stay out of it
            PERFORM set_config('session_replication_role', 'replica', true);
            EXECUTE format('WITH moved AS (DELETE FROM twin.feature_versions_default '
                           'WHERE upper(valid) >= %L AND upper(valid) < %L RETURNING *) '
                           'INSERT INTO twin.%I SELECT * FROM moved', month_start, month_end, part);
            PERFORM set_config('session_replication_role', replication, true);
            EXECUTE format('ALTER TABLE twin.feature_versions ATTACH PARTITION twin.%I '
                           'FOR VALUES FROM (%L) TO (%L)', part, month_start, month_end);
            PERFORM twin.guard_versions(format('twin.%I', part)::regclass);
            made := made + 1;
        END IF;
        first_day := first_day + interval '1 month';
    END LOOP;
    RETURN made;
END $$;
