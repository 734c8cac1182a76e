-- Each present feature's GeoJSON text, kept by the triggers as it is written (issue 23):
-- a read of the present in the default CRS with every property joins stored text instead
-- of building it per request, which was 70-90 % of a read's CPU. The text is what
-- twin.feature_geojson builds (the live file); written here once for the rows already
-- there, inline as the function was then, with the triggers off so that filling a derived
-- column is no edit: no version, no change record.
ALTER TABLE twin.features ADD COLUMN geojson text;
ALTER TABLE twin.features DISABLE TRIGGER USER;
SET LOCAL timezone = 'UTC';
UPDATE twin.features SET geojson =
       '{"type":"Feature","id":' || id || ',"geometry":' || ST_AsGeoJSON(geom, 7)
    || ',"properties":{"name":' || coalesce(to_json(name)::text, 'null')
    || ',"tags":' || coalesce(to_json(tags)::text, 'null')
    || ',"micro_grid":' || coalesce(to_json(grid_code)::text, 'null')
    || ',"residential_area":' || coalesce(to_json(area_code)::text, 'null')
    || ',"version":' || coalesce(to_json(version)::text, 'null')
    || ',"updated":' || coalesce(to_json(valid_from)::text, 'null')
    || ',"changed_by":' || coalesce(to_json(changed_by)::text, 'null')
    || CASE WHEN props = '{}' THEN '}' ELSE ',' || substr(props::text, 2) END || '}';
ALTER TABLE twin.features ENABLE TRIGGER USER;
ALTER TABLE twin.features ALTER COLUMN geojson SET NOT NULL;
