-- Change counts per local day and per month: what a period report sums instead of scanning the
-- log. A row per period and everything a report groups or filters by; a trigger on
-- twin.changes keeps them. Months let half a year be ~6 x (grids x actors x kinds) rows
-- rather than 180 x that: a day's rows are nearly as many as a month's.

-- What the counts were made with: the subdistrict's time zone (days are its calendar days)
-- and each layer's state field (an update that changes it is a status transition). Set by
-- twin.configure_change_counts, which `twin db migrate` calls from settings and layers/.
CREATE TABLE twin.change_counts_basis (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    zone         text NOT NULL,
    state_fields jsonb NOT NULL CHECK (jsonb_typeof(state_fields) = 'object')
);

CREATE TABLE twin.change_counts (
    period     text NOT NULL CHECK (period IN ('day', 'month')),
    day        date NOT NULL,  -- the period's first day
    layer      text NOT NULL,
    grid_code  text,
    area_code  text,
    actor      text NOT NULL,
    role       text NOT NULL,
    operation  text NOT NULL,
    state_from text,  -- an update's state before and after, when it changed the state
    state_to   text,
    n          bigint NOT NULL,
    CONSTRAINT change_counts_key UNIQUE NULLS NOT DISTINCT
        (period, day, layer, grid_code, area_code, actor, role, operation, state_from,
         state_to)
);

-- The instant a local day starts: what PostgreSQL makes of its midnight in the zone.
CREATE FUNCTION twin.day_start(day date, zone text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT timezone(zone, day::timestamp) $$;

-- The day an instant is counted on: its local date, or the day before when a DST jump at
-- midnight puts the instant before that date's day_start. So days tile time exactly, and a
-- report's whole days (counted here) and partial ends (read from the log) never overlap.
CREATE FUNCTION twin.change_day(t timestamptz, zone text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT timezone(zone, t)::date - (t < twin.day_start(timezone(zone, t)::date, zone))::int $$;

-- What each change counts as: its local day, where, who, what, and for an update that changed
-- its layer's state field, the state before and after. The one definition the counts and a
-- report's partial days share.
CREATE VIEW twin.change_facts AS
SELECT c.id, c.server_time, twin.change_day(c.server_time, b.zone) AS day, c.layer,
       c.grid_code, c.area_code, c.actor, c.role, c.operation,
       CASE c.operation WHEN 'update' THEN c.old_values ->> (b.state_fields ->> c.layer)
       END AS state_from,
       CASE c.operation WHEN 'update' THEN c.new_values ->> (b.state_fields ->> c.layer)
       END AS state_to
  FROM twin.changes c,
       -- its one row; LIMIT tells the planner so, even before the table is analysed
       (SELECT zone, state_fields FROM twin.change_counts_basis LIMIT 1) AS b;

-- Add changes to the counts (sorted, so concurrent writers lock count rows in one order).
-- One generic plan per session: planning anew for each change (the planner's choice for a
-- one-element array) costs more than the insert itself.
CREATE FUNCTION twin.add_counts(ids bigint[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO twin.change_counts AS t (period, day, layer, grid_code, area_code, actor, role,
                                         operation, state_from, state_to, n)
    SELECT p.period, CASE p.period WHEN 'day' THEN f.day
                                   ELSE date_trunc('month', f.day::timestamp)::date END,
           f.layer, f.grid_code, f.area_code, f.actor, f.role, f.operation, f.state_from,
           f.state_to, count(*)
      FROM twin.change_facts f CROSS JOIN (VALUES ('day'), ('month')) AS p (period)
     WHERE f.id = ANY(ids)
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
     ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ON CONFLICT ON CONSTRAINT change_counts_key DO UPDATE SET n = t.n + EXCLUDED.n;
END $$;

-- Once per statement on the log, with the rows it added. It runs inside features_after
-- (SECURITY DEFINER), hence as the owner: the app role may only read the counts.
CREATE FUNCTION twin.count_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM twin.add_counts(ARRAY(SELECT id FROM new_changes));
    RETURN NULL;
END $$;
CREATE TRIGGER changes_count AFTER INSERT ON twin.changes
    REFERENCING NEW TABLE AS new_changes
    FOR EACH STATEMENT EXECUTE FUNCTION twin.count_changes();

-- Set the zone and state fields; when they differ from what the counts were made with
-- (or there were none), count the whole log again. Returns whether it recounted.
CREATE FUNCTION twin.configure_change_counts(zone text, state_fields jsonb) RETURNS boolean
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

-- The app role may also read the counts: the grants of 0001, and these.
ALTER FUNCTION twin.grant_app(text) RENAME TO grant_app_0001;
CREATE FUNCTION twin.grant_app(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM twin.grant_app_0001(app_role);
    EXECUTE format('GRANT SELECT ON twin.change_counts, twin.change_counts_basis, '
                   'twin.change_facts TO %I', app_role);
END $$;
