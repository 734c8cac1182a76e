-- Versions partitioned by the month they closed, the open ones apart.
--
-- "As of T in this box" reads one version per feature: the one open at T. Stored as they
-- were written, the versions open at a moment lie wherever their row was last rewritten,
-- one per heap page: at 10,000,000 versions (7.4 GB) a box of 100 buildings read 100
-- scattered pages, 14 ms from disk against 1 ms for the present. Versions that closed in
-- the same month are in one partition that never changes again once the month is over, so
-- `twin db maintain` can sort it once by place (twin.sort_versions) and a box then reads
-- a few neighbouring pages of it. The open versions (one per live feature, the present) stay
-- small and hot in their own partition.
--
-- A table partitioned by an expression cannot have a primary key: (feature_id, version) stays
-- an index, and stays unique because only the triggers write versions, numbering them under
-- the feature's row lock (the application role may only read them).
-- Closing a version moves its row from the open partition to its month: PostgreSQL does that
-- as a delete and an insert, and fires row DELETE triggers on the way, so deleting and
-- truncating are refused per statement (which row movement does not fire) on every partition.

ALTER TABLE twin.feature_versions RENAME TO feature_versions_0009;
CREATE TABLE twin.feature_versions (LIKE twin.feature_versions_0009 INCLUDING DEFAULTS)
    PARTITION BY RANGE ((coalesce(upper(valid), 'infinity'::timestamptz)));
REVOKE ALL ON twin.feature_versions FROM PUBLIC;

-- Deleting or truncating versions is refused on the table and on each of its partitions.
CREATE FUNCTION twin.guard_versions(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER versions_no_delete BEFORE DELETE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION twin.refuse(%L)', part, 'versions are kept forever');
    EXECUTE format('CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON %s FOR EACH '
                   'STATEMENT EXECUTE FUNCTION twin.refuse(%L)', part, 'versions are kept forever');
END $$;

SELECT twin.guard_versions('twin.feature_versions');
CREATE TRIGGER versions_close_only BEFORE UPDATE ON twin.feature_versions
    FOR EACH ROW EXECUTE FUNCTION twin.versions_close_only();

CREATE TABLE twin.feature_versions_open PARTITION OF twin.feature_versions
    FOR VALUES FROM ('infinity') TO (MAXVALUE);
-- Versions that closed in a month without its partition yet (twin.version_partitions moves
-- them out when it makes one).
CREATE TABLE twin.feature_versions_default PARTITION OF twin.feature_versions DEFAULT;
SELECT twin.guard_versions('twin.feature_versions_open');
SELECT twin.guard_versions('twin.feature_versions_default');

-- A partition for each month (UTC) from since's to upto's that has none, holding the versions
-- of that month from the default partition. Returns how many it made. Attached, not created
-- as a partition: attaching locks readers of the table out only while the (empty or small)
-- default partition is checked.
CREATE FUNCTION twin.version_partitions(since timestamptz, upto timestamptz) RETURNS integer
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

-- The months that are over and not yet sorted by place.
CREATE VIEW twin.unsorted_version_months AS
SELECT c.oid::regclass AS part
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'twin.feature_versions'::regclass
   AND c.relname ~ '^feature_versions_\d{4}_\d{2}$'
   AND to_date(substr(c.relname, 18), 'YYYY_MM') + interval '1 month' <= now() AT TIME ZONE 'UTC'
   AND NOT EXISTS (SELECT FROM pg_index x WHERE x.indrelid = c.oid AND x.indisclustered)
 ORDER BY c.relname;

-- Sort a month that is over by place (geohash cell of about 150 m), then feature and version,
-- so a box as of a moment reads neighbouring pages. The sorting index stays, marked as the
-- partition's clustering: it says the month is done. CLUSTER locks only that month, which
-- nothing writes once it is over.
CREATE FUNCTION twin.sort_versions(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    place text := (SELECT relname FROM pg_class WHERE oid = part) || '_place_idx';
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (ST_GeoHash(geom, 7), feature_id, version)',
                   place, part);
    EXECUTE format('CLUSTER %s USING %I', part, place);
    EXECUTE format('ANALYZE %s', part);
END $$;
-- A month of a busy twin is a few GB: sorting it and building its indexes again in memory
-- takes minutes less than spilling to disk at the default 64 MB.
ALTER FUNCTION twin.sort_versions(regclass) SET maintenance_work_mem = '512MB';

-- The months the versions closed in so far, and the next one.
SELECT twin.version_partitions(
    coalesce((SELECT min(upper(valid)) FROM twin.feature_versions_0009), now()),
    now() + interval '1 month');
INSERT INTO twin.feature_versions SELECT * FROM twin.feature_versions_0009;
DROP TABLE twin.feature_versions_0009;

CREATE INDEX feature_versions_key ON twin.feature_versions (feature_id, version);
CREATE INDEX feature_versions_valid_idx ON twin.feature_versions USING gist (layer, valid);
CREATE INDEX feature_versions_geom_idx ON twin.feature_versions USING gist (geom, valid);
