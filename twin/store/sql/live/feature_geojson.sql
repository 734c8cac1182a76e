-- A feature as GeoJSON text: its id, the geometry's text as given (the caller writes it in
-- the CRS asked), and every property: the common fields, then the layer's attributes in the
-- stored object's order. The one definition of a whole feature's text: the triggers keep it
-- in twin.features.geojson for the present (twin.features_before), and reads of other CRSs
-- and of the past build it with this same function (twin.features.reads.feature_sql).
-- Concatenated, not built as jsonb and printed, which costs half as much. SQL, so the
-- planner inlines it; times are written in the session's zone (the service's are UTC, and
-- twin.features_before runs in UTC whoever writes).
CREATE OR REPLACE FUNCTION twin.feature_geojson(
    id bigint, geometry text, name text, tags text[], grid_code text, area_code text,
    version integer, valid_from timestamptz, changed_by text, props jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT '{"type":"Feature","id":' || id || ',"geometry":' || geometry
        || ',"properties":{"name":' || coalesce(to_json(name)::text, 'null')
        || ',"tags":' || coalesce(to_json(tags)::text, 'null')
        || ',"micro_grid":' || coalesce(to_json(grid_code)::text, 'null')
        || ',"residential_area":' || coalesce(to_json(area_code)::text, 'null')
        || ',"version":' || coalesce(to_json(version)::text, 'null')
        || ',"updated":' || coalesce(to_json(valid_from)::text, 'null')
        || ',"changed_by":' || coalesce(to_json(changed_by)::text, 'null')
        || CASE WHEN props = '{}' THEN '}' ELSE ',' || substr(props::text, 2) END || '}'
$$;
