-- Re-derive the grid / area / subdistrict of every feature near a changed grid, area or
-- subdistrict (twin.rederive
-- makes features_before look them up although they did not move). Unchanged rows are
-- skipped by features_before; the changed ones are logged with this reason. Open cases
-- near it are re-derived too, and re-routed if their grid changed (twin.cases_before).
CREATE OR REPLACE FUNCTION twin.reassign(kind text, code text, region geometry) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    previous text := current_setting('twin.reason', true);
    rederive text := current_setting('twin.rederive', true);
BEGIN
    PERFORM set_config('twin.reason',
        format('reassigned: %s %s changed', kind, code), true);
    PERFORM set_config('twin.rederive', 'on', true);
    IF kind = 'micro_grids' THEN
        UPDATE twin.features SET version = version
        WHERE layer NOT IN ('micro_grids', 'residential_areas', 'subdistricts')
          AND geom && region;
    ELSIF kind = 'residential_areas' THEN
        UPDATE twin.features SET version = version
        WHERE layer NOT IN ('residential_areas', 'subdistricts') AND geom && region;
    ELSE  -- a subdistrict: its areas, then their grids, then what lies in them, each
          -- taking its code from the one before (twin.subdistrict_of)
        UPDATE twin.features SET version = version
        WHERE layer = 'residential_areas' AND geom && region;
        UPDATE twin.features SET version = version
        WHERE layer = 'micro_grids' AND geom && region;
        UPDATE twin.features SET version = version
        WHERE layer NOT IN ('subdistricts', 'residential_areas', 'micro_grids')
          AND geom && region;
    END IF;
    -- open cases follow (closed ones stay where they were handled)
    UPDATE twin.cases SET version = version
     WHERE state IN ('reported', 'filed', 'dispatched', 'handled', 'parked') AND geom && region;
    PERFORM set_config('twin.reason', coalesce(previous, ''), true);
    PERFORM set_config('twin.rederive', coalesce(rederive, ''), true);
END $$;
