-- Finished months sorted by place, then by when each version began (not by feature): a box as
-- of a moment before the month wants, in each cell, the versions that began before it, and
-- these now lie together at the head of the cell's run. Measured on a month of the scale-20
-- history: 45% fewer pages for a 300 m box as of the month's start, 20% fewer as of its
-- middle; a feature's history reads 12 pages of a month instead of 5, in the same time.
-- Months sorted the old way count as unsorted again; `twin db maintain` sorts them anew.
CREATE OR REPLACE FUNCTION twin.sort_versions(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (ST_GeoHash(geom, 7), lower(valid), '
                   'feature_id)', name || '_when_idx', part);
    EXECUTE format('CLUSTER %s USING %I', part, name || '_when_idx');
    EXECUTE format('DROP INDEX IF EXISTS twin.%I', name || '_place_idx');
    EXECUTE format('ANALYZE %s', part);
END $$;

-- The months that are over and not yet sorted by place and time.
CREATE OR REPLACE VIEW twin.unsorted_version_months AS
SELECT c.oid::regclass AS part
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'twin.feature_versions'::regclass
   AND c.relname ~ '^feature_versions_\d{4}_\d{2}$'
   AND to_date(substr(c.relname, 18), 'YYYY_MM') + interval '1 month' <= now() AT TIME ZONE 'UTC'
   AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class ix ON ix.oid = x.indexrelid
                    WHERE x.indrelid = c.oid AND x.indisclustered
                      AND ix.relname = c.relname || '_when_idx')
 ORDER BY c.relname;
