-- The day an instant is counted on: its local date, or the day before when a DST jump at
-- midnight puts the instant before that date's day_start. So days tile time exactly, and a
-- report's whole days (counted here) and partial ends (read from the log) never overlap.
CREATE OR REPLACE FUNCTION twin.change_day(t timestamptz, zone text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT timezone(zone, t)::date - (t < twin.day_start(timezone(zone, t)::date, zone))::int $$;
