-- The instant a local day starts: what PostgreSQL makes of its midnight in the zone.
CREATE OR REPLACE FUNCTION twin.day_start(day date, zone text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT timezone(zone, day::timestamp) $$;
