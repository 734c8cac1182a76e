-- The micro-grid / residential area / subdistrict holding a geometry's point on surface
-- (first by code if boundaries overlap, so the answer is deterministic). Each region layer
-- reads its own partition: the parent table with the layer as a parameter made every call prune the
-- partitions again, 0.125 ms a call against 0.027 ms (10,000 buildings, measured), and every
-- feature, case and order written calls this twice.
CREATE OR REPLACE FUNCTION twin.code_at(region_layer text, g geometry) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p geometry := ST_PointOnSurface(g);  -- once: the query would compute it per candidate too
BEGIN
    IF region_layer = 'micro_grids' THEN
        RETURN (SELECT f.props ->> 'code' FROM twin.features_micro_grids f
                 WHERE ST_Intersects(f.geom, p) ORDER BY f.props ->> 'code' LIMIT 1);
    ELSIF region_layer = 'residential_areas' THEN
        RETURN (SELECT f.props ->> 'code' FROM twin.features_residential_areas f
                 WHERE ST_Intersects(f.geom, p) ORDER BY f.props ->> 'code' LIMIT 1);
    ELSIF region_layer = 'subdistricts' THEN
        RETURN (SELECT f.props ->> 'code' FROM twin.features_subdistricts f
                 WHERE ST_Intersects(f.geom, p) ORDER BY f.props ->> 'code' LIMIT 1);
    END IF;
    RAISE EXCEPTION 'no region layer %: micro_grids, residential_areas or subdistricts',
        region_layer;
END $$;
