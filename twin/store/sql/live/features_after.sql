-- The log of twin.features, written once per statement from the rows it wrote: a single edit
-- is a statement of one row, an import's batch one of thousands, and both are logged by one
-- set-based statement (written once per row, a batch of 5,000 made 5,000 inserts into the
-- log, and the counts' statement trigger on the log fired for each).
-- ``touched`` holds the statement's rows as inserted, or as they were before an update or a
-- delete; an updated feature's new row is the feature as it is now.
CREATE OR REPLACE FUNCTION twin.features_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    stamp timestamptz := twin.clock();  -- once per statement: the same moment everywhere
    first_layer text;
    last_layer text;
    regions text[];
    codes text[];
    places geometry[];
BEGIN
    SELECT min(t.layer), max(t.layer) INTO first_layer, last_layer FROM touched t;
    IF first_layer IS NULL THEN
        RETURN NULL;  -- nothing written (every row unchanged, or none matched): nothing logged
    END IF;

    -- Each feature as the pair (o, n) of its rows before and after, in the order of their
    -- ids. A change's id is drawn here, so that its version carries it without a look-up.
    WITH pair AS MATERIALIZED (
        SELECT nextval('twin.changes_id_seq') AS change_id, p.*,
               -- the fields the change compares, each object built once
               twin.fields((p.o).name, (p.o).props, (p.o).tags, (p.o).grid_code,
                           (p.o).area_code) AS old_fields,
               twin.fields((p.n).name, (p.n).props, (p.n).tags, (p.n).grid_code,
                           (p.n).area_code) AS new_fields,
               TG_OP <> 'UPDATE' OR ST_AsEWKB((p.n).geom) <> ST_AsEWKB((p.o).geom) AS moved,
               -- the feature as the change shows it: the new row, the old one once deleted
               coalesce(p.n, p.o) AS f
          FROM (SELECT CASE WHEN TG_OP <> 'INSERT' THEN ROW(t.*)::twin.features END AS o,
                       CASE TG_OP WHEN 'INSERT' THEN ROW(t.*)::twin.features
                                  WHEN 'UPDATE' THEN f END AS n
                  FROM touched t
                  -- an update's new rows; the layers' range, in parameters, leaves the
                  -- other partitions out before the statement starts (not opened at all)
                  LEFT JOIN twin.features f
                         ON TG_OP = 'UPDATE' AND f.layer BETWEEN first_layer AND last_layer
                        AND f.layer = t.layer AND f.id = t.id
                 ORDER BY t.id) AS p
    ), logged AS (
        INSERT INTO twin.changes (id, server_time, client_time, actor, role, device, operation,
                                  layer, feature_id, version_before, version_after, changed,
                                  old_values, new_values, geom_changed, geom, grid_code,
                                  area_code, subdistrict_code, reason, edit_id, import_id)
        OVERRIDING SYSTEM VALUE
        SELECT p.change_id, stamp, twin.context('client_time')::timestamptz,
               coalesce(twin.context('actor'), session_user),
               coalesce(twin.context('role'), 'database'), twin.context('device'),
               lower(TG_OP), (p.f).layer, (p.f).id, (p.o).version, (p.n).version,
               CASE WHEN p.moved THEN d.changed || 'geometry'::text ELSE d.changed END,
               CASE WHEN p.moved AND (p.o).id IS NOT NULL THEN v.old_values
                    || jsonb_build_object('geometry', ST_AsGeoJSON((p.o).geom)::jsonb)
                    ELSE v.old_values END,
               CASE WHEN p.moved AND (p.n).id IS NOT NULL THEN v.new_values
                    || jsonb_build_object('geometry', ST_AsGeoJSON((p.n).geom)::jsonb)
                    ELSE v.new_values END,
               p.moved,
               -- where it happened: both places when a feature moved
               CASE WHEN TG_OP = 'UPDATE' AND p.moved THEN ST_Collect((p.o).geom, (p.n).geom)
                    ELSE (p.f).geom END,
               (p.f).grid_code, (p.f).area_code, (p.f).subdistrict_code, twin.context('reason'),
               twin.context('edit_id'), twin.context('import_id')::bigint
          FROM pair p,
               LATERAL (SELECT coalesce(array_agg(k ORDER BY k), '{}'),
                               jsonb_object_agg(k, p.old_fields -> k)
                                   FILTER (WHERE TG_OP = 'UPDATE'),
                               jsonb_object_agg(k, p.new_fields -> k)
                                   FILTER (WHERE TG_OP = 'UPDATE')
                          FROM jsonb_object_keys(coalesce(p.old_fields, '{}')
                                                 || coalesce(p.new_fields, '{}')) AS k
                         WHERE (p.old_fields -> k) IS DISTINCT FROM (p.new_fields -> k)
                       ) AS d(changed, old_values, new_values),
               -- an insert's or a delete's values are all its fields
               LATERAL (SELECT CASE TG_OP WHEN 'UPDATE' THEN coalesce(d.old_values, '{}')
                                          ELSE p.old_fields END,
                               CASE TG_OP WHEN 'UPDATE' THEN coalesce(d.new_values, '{}')
                                          ELSE p.new_fields END) AS v(old_values, new_values)
         ORDER BY p.change_id
    ), versioned AS (
        INSERT INTO twin.feature_versions (feature_id, version, layer, name, props, tags, geom,
                                           grid_code, area_code, subdistrict_code, valid,
                                           change_id, changed_by, source_id)
        SELECT (p.n).id, (p.n).version, (p.n).layer, (p.n).name, (p.n).props, (p.n).tags,
               (p.n).geom, (p.n).grid_code, (p.n).area_code, (p.n).subdistrict_code,
               tstzrange(stamp, NULL, '[)'),
               p.change_id, (p.n).changed_by, (p.n).source_id
          FROM pair p WHERE (p.n).id IS NOT NULL
    )
    -- grids and areas that moved, appeared, vanished or were recoded
    SELECT array_agg((p.f).layer ORDER BY p.change_id),
           array_agg((p.f).props ->> 'code' ORDER BY p.change_id),
           array_agg(CASE TG_OP WHEN 'UPDATE'
                         THEN ST_Union(ST_Envelope((p.o).geom), ST_Envelope((p.n).geom))
                         ELSE (p.f).geom END ORDER BY p.change_id)
      INTO regions, codes, places
      FROM pair p
     WHERE (p.f).layer IN ('micro_grids', 'residential_areas', 'subdistricts')
       AND (p.moved OR ((p.o).props ->> 'code') IS DISTINCT FROM ((p.n).props ->> 'code'));

    IF TG_OP <> 'INSERT' THEN
        -- the versions replaced end now (open versions: their own partition)
        UPDATE twin.feature_versions v
           SET valid = tstzrange(lower(v.valid), greatest(lower(v.valid), stamp), '[)')
          FROM touched t
         WHERE v.feature_id = t.id AND v.version = t.version
           AND coalesce(upper(v.valid), 'infinity') = 'infinity';
    END IF;
    IF TG_OP <> 'UPDATE' THEN
        INSERT INTO twin.feature_counts AS c (layer, features)
        SELECT t.layer, CASE TG_OP WHEN 'INSERT' THEN count(*) ELSE -count(*) END
          FROM touched t GROUP BY t.layer ORDER BY t.layer
        ON CONFLICT (layer) DO UPDATE SET features = c.features + EXCLUDED.features;
    END IF;

    -- re-derive their neighbours, each reassignment logged in turn by this trigger
    FOR i IN 1 .. coalesce(cardinality(regions), 0) LOOP
        PERFORM twin.reassign(regions[i], codes[i], places[i]);
    END LOOP;
    RETURN NULL;
END $$;
ALTER FUNCTION twin.features_after() SET enable_seqscan = off SET jit = off;
-- Transition tables take one event a trigger: three triggers, one function.
CREATE OR REPLACE TRIGGER features_after_insert AFTER INSERT ON twin.features
    REFERENCING NEW TABLE AS touched FOR EACH STATEMENT EXECUTE FUNCTION twin.features_after();
CREATE OR REPLACE TRIGGER features_after_update AFTER UPDATE ON twin.features
    REFERENCING OLD TABLE AS touched FOR EACH STATEMENT EXECUTE FUNCTION twin.features_after();
CREATE OR REPLACE TRIGGER features_after_delete AFTER DELETE ON twin.features
    REFERENCING OLD TABLE AS touched FOR EACH STATEMENT EXECUTE FUNCTION twin.features_after();
