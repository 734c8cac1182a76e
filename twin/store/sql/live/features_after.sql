CREATE OR REPLACE FUNCTION twin.features_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    stamp timestamptz := twin.clock();  -- once per row: the same moment everywhere
    o jsonb;
    n jsonb;
    geom_changed boolean;
    changed_fields text[];
    old_values jsonb;
    new_values jsonb;
    change_id bigint;
    f record;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        o := twin.fields(OLD.name, OLD.props, OLD.tags, OLD.grid_code, OLD.area_code);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        n := twin.fields(NEW.name, NEW.props, NEW.tags, NEW.grid_code, NEW.area_code);
    END IF;
    geom_changed := TG_OP <> 'UPDATE' OR ST_AsEWKB(NEW.geom) <> ST_AsEWKB(OLD.geom);

    SELECT coalesce(array_agg(k ORDER BY k), '{}'),
           CASE WHEN o IS NULL THEN NULL ELSE coalesce(jsonb_object_agg(k, o -> k), '{}') END,
           CASE WHEN n IS NULL THEN NULL ELSE coalesce(jsonb_object_agg(k, n -> k), '{}') END
      INTO changed_fields, old_values, new_values
      FROM jsonb_object_keys(coalesce(o, '{}') || coalesce(n, '{}')) AS k
     WHERE (o -> k) IS DISTINCT FROM (n -> k);
    IF geom_changed THEN
        changed_fields := changed_fields || 'geometry'::text;
        IF TG_OP <> 'INSERT' THEN
            old_values := old_values || jsonb_build_object('geometry', ST_AsGeoJSON(OLD.geom)::jsonb);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_values := new_values || jsonb_build_object('geometry', ST_AsGeoJSON(NEW.geom)::jsonb);
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN f := OLD; ELSE f := NEW; END IF;

    INSERT INTO twin.changes (server_time, client_time, actor, role, device, operation, layer, feature_id,
                              version_before, version_after, changed, old_values, new_values,
                              geom_changed, geom, grid_code, area_code, reason, edit_id,
                              import_id)
    VALUES (stamp, twin.context('client_time')::timestamptz,
            coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'),
            twin.context('device'), lower(TG_OP), f.layer, f.id,
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.version END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.version END,
            changed_fields, old_values, new_values, geom_changed,
            -- where it happened: both places when a feature moved
            CASE WHEN TG_OP = 'UPDATE' AND geom_changed THEN ST_Collect(OLD.geom, NEW.geom)
                 ELSE f.geom END,
            f.grid_code,
            f.area_code, twin.context('reason'), twin.context('edit_id'),
            twin.context('import_id')::bigint)
    RETURNING id INTO change_id;

    IF TG_OP <> 'INSERT' THEN
        UPDATE twin.feature_versions
           SET valid = tstzrange(lower(valid), greatest(lower(valid), stamp), '[)')
         WHERE feature_id = OLD.id AND version = OLD.version;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO twin.feature_versions (feature_id, version, layer, name, props, tags, geom,
                                           grid_code, area_code, valid, change_id, changed_by,
                                           source_id)
        VALUES (NEW.id, NEW.version, NEW.layer, NEW.name, NEW.props, NEW.tags, NEW.geom,
                NEW.grid_code, NEW.area_code, tstzrange(stamp, NULL, '[)'), change_id,
                NEW.changed_by, NEW.source_id);
    END IF;

    -- A grid or area that moved, appeared, vanished or was renamed: re-derive its neighbours.
    IF f.layer IN ('micro_grids', 'residential_areas')
       AND (TG_OP <> 'UPDATE' OR geom_changed
            OR (OLD.props ->> 'code') IS DISTINCT FROM (NEW.props ->> 'code')) THEN
        PERFORM twin.reassign(f.layer, f.props ->> 'code',
            CASE TG_OP WHEN 'UPDATE' THEN ST_Union(ST_Envelope(OLD.geom), ST_Envelope(NEW.geom))
                       ELSE f.geom END);
    END IF;
    RETURN NULL;
END $$;
ALTER FUNCTION twin.features_after() SET enable_seqscan = off SET jit = off;
