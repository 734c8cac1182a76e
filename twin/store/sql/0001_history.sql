-- History by the database: triggers derive a feature's micro-grid and residential area,
-- number its versions, keep every version with its validity interval and append a change
-- record for every insert, update and delete, whatever path the write came by.

-- Who is editing: set per transaction by twin.set_context(); plain SQL leaves it empty and
-- the change is recorded under the database user.
CREATE FUNCTION twin.context(key text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('twin.' || key, true), '') $$;

-- When a change happens: the transaction's start, unless the owner of schema twin (loading a
-- generated history, `twin sample --history`) set twin.clock; the application role cannot.
-- PL/pgSQL, not SQL, here and below: a trigger calls these per row, and PL/pgSQL keeps their
-- plans where an SQL function with a sub-select is planned again on every call.
CREATE FUNCTION twin.clock() RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    asked text := twin.context('clock');
BEGIN
    IF asked IS NOT NULL AND pg_has_role(session_user,
            (SELECT nspowner FROM pg_namespace WHERE nspname = 'twin'), 'MEMBER') THEN
        RETURN asked::timestamptz;
    END IF;
    RETURN now();
END $$;

CREATE FUNCTION twin.set_context(actor text, role text, device text DEFAULT NULL,
                                 reason text DEFAULT NULL, client_time timestamptz DEFAULT NULL,
                                 edit_id text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('twin.actor', coalesce(actor, ''), true);
    PERFORM set_config('twin.role', coalesce(role, ''), true);
    PERFORM set_config('twin.device', coalesce(device, ''), true);
    PERFORM set_config('twin.reason', coalesce(reason, ''), true);
    PERFORM set_config('twin.client_time', coalesce(client_time::text, ''), true);
    PERFORM set_config('twin.edit_id', coalesce(edit_id, ''), true);
END $$;

-- The micro-grid / residential area holding a geometry's point on surface (first by code
-- if boundaries overlap, so the answer is deterministic).
CREATE FUNCTION twin.code_at(region_layer text, g geometry) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT f.props ->> 'code' FROM twin.features f, ST_PointOnSurface(g) AS p
             WHERE f.layer = region_layer AND ST_Intersects(f.geom, p)
             ORDER BY f.props ->> 'code' LIMIT 1);
END $$;

-- A feature's fields as one flat object: what the change log compares and records.
CREATE FUNCTION twin.fields(name text, props jsonb, tags text[], grid_code text,
                            area_code text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT props || jsonb_build_object('name', name, 'tags', to_jsonb(tags),
                                       'micro_grid', grid_code, 'residential_area', area_code) $$;

CREATE FUNCTION twin.features_before() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id <> OLD.id OR NEW.layer <> OLD.layer) THEN
        RAISE EXCEPTION 'a feature keeps its id and layer (% %): create a new feature instead',
            OLD.layer, OLD.id USING ERRCODE = 'check_violation';
    END IF;
    -- Derive only from a geometry the constraints will accept; they reject the rest.
    IF NOT ST_IsEmpty(NEW.geom) AND ST_IsValid(NEW.geom) THEN
        NEW.grid_code := CASE NEW.layer
            WHEN 'micro_grids' THEN NEW.props ->> 'code'
            WHEN 'residential_areas' THEN NULL
            ELSE twin.code_at('micro_grids', NEW.geom) END;
        NEW.area_code := CASE NEW.layer
            WHEN 'residential_areas' THEN NEW.props ->> 'code'
            ELSE twin.code_at('residential_areas', NEW.geom) END;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.props = OLD.props
           AND NEW.tags = OLD.tags AND ST_AsEWKB(NEW.geom) = ST_AsEWKB(OLD.geom)
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

-- Re-derive the grid / area of every feature near a changed grid or area. Unchanged rows are
-- skipped by features_before; the changed ones are logged with this reason.
CREATE FUNCTION twin.reassign(kind text, code text, region geometry) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    previous text := current_setting('twin.reason', true);
BEGIN
    PERFORM set_config('twin.reason',
        format('reassigned: %s %s changed', kind, code), true);
    IF kind = 'micro_grids' THEN
        UPDATE twin.features SET version = version
        WHERE layer NOT IN ('micro_grids', 'residential_areas') AND geom && region;
    ELSE
        UPDATE twin.features SET version = version
        WHERE layer <> 'residential_areas' AND geom && region;
    END IF;
    PERFORM set_config('twin.reason', coalesce(previous, ''), true);
END $$;

CREATE FUNCTION twin.features_after() RETURNS trigger
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
                              geom_changed, geom, grid_code, area_code, reason, edit_id)
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
            f.area_code, twin.context('reason'), twin.context('edit_id'))
    RETURNING id INTO change_id;

    IF TG_OP <> 'INSERT' THEN
        UPDATE twin.feature_versions
           SET valid = tstzrange(lower(valid), greatest(lower(valid), stamp), '[)')
         WHERE feature_id = OLD.id AND version = OLD.version;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO twin.feature_versions (feature_id, version, layer, name, props, tags, geom,
                                           grid_code, area_code, valid, change_id, changed_by)
        VALUES (NEW.id, NEW.version, NEW.layer, NEW.name, NEW.props, NEW.tags, NEW.geom,
                NEW.grid_code, NEW.area_code, tstzrange(stamp, NULL, '[)'), change_id,
                NEW.changed_by);
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

CREATE TRIGGER features_before BEFORE INSERT OR UPDATE ON twin.features
    FOR EACH ROW EXECUTE FUNCTION twin.features_before();
CREATE TRIGGER features_after AFTER INSERT OR UPDATE OR DELETE ON twin.features
    FOR EACH ROW EXECUTE FUNCTION twin.features_after();

-- Listeners of the live feed (GET /changes/stream) hear of new changes when they commit; the
-- payload is the newest id, and they read what they missed from the log itself.
CREATE FUNCTION twin.notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('twin_changes', (SELECT max(id)::text FROM new_changes));
    RETURN NULL;
END $$;
CREATE TRIGGER changes_notify AFTER INSERT ON twin.changes
    REFERENCING NEW TABLE AS new_changes
    FOR EACH STATEMENT EXECUTE FUNCTION twin.notify_changes();

-- What history must never allow.
CREATE FUNCTION twin.refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% is refused: history is never rewritten (%)',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER changes_append_only BEFORE UPDATE OR DELETE ON twin.changes
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('the change log is append-only');
CREATE TRIGGER changes_no_truncate BEFORE TRUNCATE ON twin.changes
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('the change log is append-only');
CREATE TRIGGER versions_no_delete BEFORE DELETE ON twin.feature_versions
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('versions are kept forever');
CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON twin.feature_versions
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('versions are kept forever');
CREATE TRIGGER features_no_truncate BEFORE TRUNCATE ON twin.features
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('delete features row by row so each is logged');

-- A version may only be closed, once: its content and start never change.
CREATE FUNCTION twin.versions_close_only() RETURNS trigger
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
CREATE TRIGGER versions_close_only BEFORE UPDATE ON twin.feature_versions
    FOR EACH ROW EXECUTE FUNCTION twin.versions_close_only();

-- A layer declared in layers/ gets its partition, with the geometry type as a constraint.
CREATE FUNCTION twin.register_layer(layer_name text, geometry_type text, title text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part text := 'features_' || layer_name;
    stored text;
BEGIN
    SELECT l.geometry_type INTO stored FROM twin.layers l WHERE l.name = layer_name;
    IF stored IS NOT NULL AND stored <> upper(geometry_type) THEN
        RAISE EXCEPTION 'layer % stores % geometries; changing it to % needs a migration',
            layer_name, stored, upper(geometry_type);
    END IF;
    INSERT INTO twin.layers VALUES (layer_name, upper(geometry_type), title)
        ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title;
    IF to_regclass(format('twin.%I', part)) IS NULL THEN
        EXECUTE format('CREATE TABLE twin.%I PARTITION OF twin.features FOR VALUES IN (%L)',
                       part, layer_name);
        EXECUTE format('ALTER TABLE twin.%I ADD CONSTRAINT %I CHECK (GeometryType(geom) = %L)',
                       part, layer_name || '_geometry_must_be_' || lower(geometry_type),
                       upper(geometry_type));
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON twin.%I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION twin.refuse(%L)', part || '_no_truncate', part,
                       'delete features row by row so each is logged');
    END IF;
END $$;

-- What the service's own role may do: edit features (the triggers log it), read history,
-- manage users and tokens. Never write the log or the versions directly.
CREATE FUNCTION twin.grant_app(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA twin TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.features, twin.users, '
                   'twin.user_grids, twin.tokens, twin.metadata TO %I', app_role);
    EXECUTE format('GRANT SELECT ON twin.changes, twin.feature_versions, twin.layers TO %I',
                   app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.feature_id_seq TO %I', app_role);
    FOR part IN SELECT 'features_' || name AS t FROM twin.layers LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.%I TO %I', part.t,
                       app_role);
    END LOOP;
END $$;
REVOKE ALL ON twin.changes, twin.feature_versions FROM PUBLIC;
