-- One layer as a GeoJSON FeatureCollection, built by PostgreSQL; properties carry the
-- common columns (name, tags, grid, version, last change) next to the layer's attributes.
-- {features} is the present or the versions valid at a moment (twin.features.reads.source).
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'id', f.id,
        'geometry', ST_AsGeoJSON(f.geom, 6)::json,
        'properties', f.props || jsonb_build_object(
            'name', f.name, 'tags', f.tags, 'micro_grid', f.grid_code,
            'residential_area', f.area_code, 'version', f.version,
            'changed_by', f.changed_by, 'changed_at', f.valid_from)
    ) ORDER BY f.id), '[]'::json)
)::text
FROM {features}
WHERE f.layer = %(layer)s
