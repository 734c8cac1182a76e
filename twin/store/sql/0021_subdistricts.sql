-- Subdistricts (街道) as a dimension (issue 23, item 2): a district's twin holds several, and
-- every feature, version, change, case and hotline order names the one it lies in, derived
-- like its micro-grid from the outlines of the layer `subdistricts` (twin.code_at); a user
-- may be limited to one (NULL: the whole district). docs/scale.md: the same column is the
-- distribution column on Citus. A twin without outlines leaves it NULL, as it leaves a
-- feature outside every grid without a grid; loading the outlines derives it for everything
-- inside them (twin.reassign, through the log like any reassignment).
ALTER TABLE twin.features ADD COLUMN subdistrict_code text;
ALTER TABLE twin.feature_versions ADD COLUMN subdistrict_code text;
ALTER TABLE twin.changes ADD COLUMN subdistrict_code text;
ALTER TABLE twin.cases ADD COLUMN subdistrict_code text;
ALTER TABLE twin.orders ADD COLUMN subdistrict_code text;
ALTER TABLE twin.users ADD COLUMN subdistrict_code text;
COMMENT ON COLUMN twin.users.subdistrict_code IS
    'the subdistrict this user''s boards, reports and rates are limited to; NULL: all of them';
