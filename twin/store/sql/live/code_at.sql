-- The micro-grid / residential area holding a geometry's point on surface (first by code
-- if boundaries overlap, so the answer is deterministic).
CREATE OR REPLACE FUNCTION twin.code_at(region_layer text, g geometry) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT f.props ->> 'code' FROM twin.features f, ST_PointOnSurface(g) AS p
             WHERE f.layer = region_layer AND ST_Intersects(f.geom, p)
             ORDER BY f.props ->> 'code' LIMIT 1);
END $$;
