-- A feature that did not move keeps its micro-grid, residential area and subdistrict: most edits change
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
        NEW.subdistrict_code := CASE NEW.layer WHEN 'subdistricts' THEN NEW.props ->> 'code'
                                               ELSE OLD.subdistrict_code END;
    -- Derive only from a geometry the constraints will accept; they reject the rest.
    ELSIF NOT ST_IsEmpty(NEW.geom) AND ST_IsValid(NEW.geom) THEN
        NEW.grid_code := CASE NEW.layer
            WHEN 'micro_grids' THEN NEW.props ->> 'code'
            WHEN 'residential_areas' THEN NULL
            WHEN 'subdistricts' THEN NULL
            ELSE twin.code_at('micro_grids', NEW.geom) END;
        NEW.area_code := CASE NEW.layer
            WHEN 'residential_areas' THEN NEW.props ->> 'code'
            WHEN 'subdistricts' THEN NULL
            ELSE twin.code_at('residential_areas', NEW.geom) END;
        -- an area from the outlines; a grid from its area; the rest from their grid or area
        NEW.subdistrict_code := CASE NEW.layer
            WHEN 'subdistricts' THEN NEW.props ->> 'code'
            WHEN 'residential_areas' THEN twin.code_at('subdistricts', NEW.geom)
            WHEN 'micro_grids' THEN twin.subdistrict_of(NULL, NEW.area_code, NEW.geom)
            ELSE twin.subdistrict_of(NEW.grid_code, NEW.area_code, NEW.geom) END;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF same_place AND NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.props = OLD.props
           AND NEW.tags = OLD.tags
           AND NEW.grid_code IS NOT DISTINCT FROM OLD.grid_code
           AND NEW.area_code IS NOT DISTINCT FROM OLD.area_code
           AND NEW.subdistrict_code IS NOT DISTINCT FROM OLD.subdistrict_code THEN
            RETURN NULL;  -- nothing changed: no new version, no change record
        END IF;
        NEW.version := OLD.version + 1;
    ELSE  -- a feature brought back (a reverted delete) continues its own numbering, which
          -- its last change holds: one index, where its versions are a partition a month,
          -- each looked up (most of this trigger's own time in an import's insert)
        NEW.version := coalesce((SELECT coalesce(c.version_after, c.version_before)
                                   FROM twin.changes c WHERE c.feature_id = NEW.id
                                  ORDER BY c.id DESC LIMIT 1), 0) + 1;
    END IF;
    NEW.valid_from := twin.clock();
    NEW.changed_by := coalesce(twin.context('actor'), session_user);
    -- the feature's text as a read serves it (default CRS: WGS-84 lon/lat, 7 decimals, as
    -- twin.crs.CRS84), kept here so a page is stored text joined, not text built per read
    NEW.geojson := twin.feature_geojson(NEW.id, ST_AsGeoJSON(NEW.geom, 7), NEW.name, NEW.tags,
                                        NEW.grid_code, NEW.area_code, NEW.version,
                                        NEW.valid_from, NEW.changed_by, NEW.props);
    RETURN NEW;
END $$;
-- UTC whoever writes, so the stored text's times read as a read in the service's sessions
-- would write them
ALTER FUNCTION twin.features_before() SET enable_seqscan = off SET jit = off
    SET timezone = 'UTC';
