-- Once per statement on the log, with the rows it added. It runs inside features_after
-- (SECURITY DEFINER), hence as the owner: the app role may only read the counts.
CREATE OR REPLACE FUNCTION twin.count_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM twin.add_counts(ARRAY(SELECT id FROM new_changes));
    RETURN NULL;
END $$;
