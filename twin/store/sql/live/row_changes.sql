-- What an update changed in a row, as {field: [before, after]}, the geometry as GeoJSON, the
-- fields of ``skip`` (and geom, said apart) left out: one rule for the events of cases and of
-- orders (twin.cases_after, twin.orders_after).
CREATE OR REPLACE FUNCTION twin.row_changes(new_row jsonb, old_row jsonb, skip text[],
                                            new_geom geometry, old_geom geometry) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT coalesce((SELECT jsonb_object_agg(n.key, jsonb_build_array(o.value, n.value))
                       FROM jsonb_each(new_row) n JOIN jsonb_each(old_row) o USING (key)
                      WHERE n.value IS DISTINCT FROM o.value
                        AND n.key <> ALL (skip || '{geom}'::text[])), '{}')
        || CASE WHEN new_geom IS DISTINCT FROM old_geom
                THEN jsonb_build_object('geometry', jsonb_build_array(
                    ST_AsGeoJSON(old_geom)::jsonb, ST_AsGeoJSON(new_geom)::jsonb))
                ELSE '{}' END
$$;
