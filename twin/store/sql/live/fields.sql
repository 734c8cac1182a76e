-- A feature's fields as one flat object: what the change log compares and records. STABLE, as
-- what it calls is (to_jsonb, jsonb_build_object): IMMUTABLE kept the planner from inlining
-- it, so every call parsed and planned its body again.
CREATE OR REPLACE FUNCTION twin.fields(name text, props jsonb, tags text[], grid_code text,
                                       area_code text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT props || jsonb_build_object('name', name, 'tags', to_jsonb(tags),
                                       'micro_grid', grid_code, 'residential_area', area_code) $$;
