-- Cheaper history triggers for the same log: a generated history (`twin sample --history`)
-- writes millions of changes, and these functions cost half the backend's time per edit.

-- When a change happens, as in 0001, in SQL that the planner inlines into the triggers'
-- cached plans. 0001's PL/pgSQL, called from features_before under the session's search_path
-- and from features_after under its own, planned its expressions (and the sub-select asking
-- who owns schema twin) again on every call. CREATE on schema twin is its owner's (and
-- superusers'); the application role has USAGE only.
CREATE OR REPLACE FUNCTION twin.clock() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN twin.context('clock') IS NOT NULL
                     AND has_schema_privilege(session_user, 'twin', 'CREATE')
                THEN twin.context('clock')::timestamptz ELSE now() END $$;

-- A feature's fields, as in 0001, but STABLE as what it calls is (to_jsonb,
-- jsonb_build_object): IMMUTABLE kept the planner from inlining it, so every call parsed
-- and planned its body again.
CREATE OR REPLACE FUNCTION twin.fields(name text, props jsonb, tags text[], grid_code text,
                                       area_code text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT props || jsonb_build_object('name', name, 'tags', to_jsonb(tags),
                                       'micro_grid', grid_code, 'residential_area', area_code) $$;

-- A feature that did not move keeps its micro-grid and residential area: most edits change
-- attributes only, and looking the codes up again cost two spatial queries per edit. They
-- are looked up when it moves or is inserted, and when twin.reassign asks (twin.rederive),
-- because a grid or area around it changed. A grid's and an area's own code is its props'.
CREATE OR REPLACE FUNCTION twin.features_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    same_place boolean := TG_OP = 'UPDATE' AND ST_AsEWKB(NEW.geom) = ST_AsEWKB(OLD.geom);
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id <> OLD.id OR NEW.layer <> OLD.layer) THEN
        RAISE EXCEPTION 'a feature keeps its id and layer (% %): create a new feature instead',
            OLD.layer, OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF same_place AND current_setting('twin.rederive', true) IS DISTINCT FROM 'on' THEN
        NEW.grid_code := CASE NEW.layer WHEN 'micro_grids' THEN NEW.props ->> 'code'
                                        ELSE OLD.grid_code END;
        NEW.area_code := CASE NEW.layer WHEN 'residential_areas' THEN NEW.props ->> 'code'
                                        ELSE OLD.area_code END;
    -- Derive only from a geometry the constraints will accept; they reject the rest.
    ELSIF NOT ST_IsEmpty(NEW.geom) AND ST_IsValid(NEW.geom) THEN
        NEW.grid_code := CASE NEW.layer
            WHEN 'micro_grids' THEN NEW.props ->> 'code'
            WHEN 'residential_areas' THEN NULL
            ELSE twin.code_at('micro_grids', NEW.geom) END;
        NEW.area_code := CASE NEW.layer
            WHEN 'residential_areas' THEN NEW.props ->> 'code'
            ELSE twin.code_at('residential_areas', NEW.geom) END;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF same_place AND NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.props = OLD.props
           AND NEW.tags = OLD.tags
           AND NEW.grid_code IS NOT DISTINCT FROM OLD.grid_code
           AND NEW.area_code IS NOT DISTINCT FROM OLD.area_code THEN
            RETURN NULL;  -- nothing changed: no new version, no change record
        END IF;
        NEW.version := OLD.version + 1;
    ELSE  -- a feature brought back (a reverted delete) continues its own numbering
        NEW.version := coalesce((SELECT max(version) FROM twin.feature_versions
                                  WHERE feature_id = NEW.id), 0) + 1;
    END IF;
    NEW.valid_from := twin.clock();
    NEW.changed_by := coalesce(twin.context('actor'), session_user);
    RETURN NEW;
END $$;

-- Re-derive the grid / area of every feature near a changed grid or area (twin.rederive
-- makes features_before look them up although they did not move). Unchanged rows are
-- skipped by features_before; the changed ones are logged with this reason.
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
        WHERE layer NOT IN ('micro_grids', 'residential_areas') AND geom && region;
    ELSE
        UPDATE twin.features SET version = version
        WHERE layer <> 'residential_areas' AND geom && region;
    END IF;
    PERFORM set_config('twin.reason', coalesce(previous, ''), true);
    PERFORM set_config('twin.rederive', coalesce(rederive, ''), true);
END $$;
