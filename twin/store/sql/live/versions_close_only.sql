-- A version may only be closed, once: its content and start never change.
CREATE OR REPLACE FUNCTION twin.versions_close_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF upper(OLD.valid) IS NOT NULL OR lower(NEW.valid) <> lower(OLD.valid)
       OR (NEW.feature_id, NEW.version, NEW.layer, NEW.name, NEW.props, NEW.tags,
           ST_AsEWKB(NEW.geom), NEW.grid_code, NEW.area_code, NEW.change_id, NEW.changed_by)
          IS DISTINCT FROM
          (OLD.feature_id, OLD.version, OLD.layer, OLD.name, OLD.props, OLD.tags,
           ST_AsEWKB(OLD.geom), OLD.grid_code, OLD.area_code, OLD.change_id, OLD.changed_by) THEN
        RAISE EXCEPTION 'feature % version % is history: only its end may be set, once',
            OLD.feature_id, OLD.version USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
