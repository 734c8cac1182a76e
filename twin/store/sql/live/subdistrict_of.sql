-- The subdistrict of a feature, case or order: its micro-grid's, else its residential area's
-- (a grid lies in one area, an area in one subdistrict), else the outline holding its point
-- on surface. Outlines are large (a subdistrict's whole boundary, stored compressed): testing
-- every new feature against one made a scale-200 load run at 220 features a second, where an
-- index probe for its grid's row costs what deriving the grid did. PL/pgSQL, as code_at, for
-- it reads the layers' partitions, which are made after the live code.
CREATE OR REPLACE FUNCTION twin.subdistrict_of(grid text, area text, g geometry) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce(
        (SELECT m.subdistrict_code FROM twin.features_micro_grids m
          WHERE m.grid_code = grid AND m.subdistrict_code IS NOT NULL LIMIT 1),
        (SELECT a.subdistrict_code FROM twin.features_residential_areas a
          WHERE a.area_code = area AND a.subdistrict_code IS NOT NULL LIMIT 1),
        twin.code_at('subdistricts', g));
END $$;
