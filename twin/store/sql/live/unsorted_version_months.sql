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
