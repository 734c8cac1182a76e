-- A digest of what the twin holds, independent of ids, load order and time: two twins with
-- the same content have the same hash.
SELECT md5(coalesce(string_agg(line, E'\n' ORDER BY line), ''))
FROM (
    SELECT concat_ws('|', layer, name, props::text, tags::text, grid_code, area_code,
                     encode(ST_AsEWKB(geom), 'hex')) AS line
    FROM twin.features
) AS content
