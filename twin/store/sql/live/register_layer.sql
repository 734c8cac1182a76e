-- A layer declared (in layers/, or by an admin: put_layer_spec) gets its partition, with the
-- geometry type as a constraint.
CREATE OR REPLACE FUNCTION twin.register_layer(layer_name text, geometry_type text, title text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part text := 'features_' || layer_name;
    stored text;
    grantee text;
BEGIN
    SELECT l.geometry_type INTO stored FROM twin.layers l WHERE l.name = layer_name;
    IF stored IS NOT NULL AND stored <> upper(geometry_type) THEN
        RAISE EXCEPTION 'layer % stores % geometries; changing it to % needs a migration',
            layer_name, stored, upper(geometry_type);
    END IF;
    INSERT INTO twin.layers VALUES (layer_name, upper(geometry_type), title)
        ON CONFLICT (name) DO UPDATE SET title = EXCLUDED.title;
    IF to_regclass(format('twin.%I', part)) IS NULL THEN
        EXECUTE format('CREATE TABLE twin.%I PARTITION OF twin.features FOR VALUES IN (%L)',
                       part, layer_name);
        EXECUTE format('ALTER TABLE twin.%I ADD CONSTRAINT %I CHECK (GeometryType(geom) = %L)',
                       part, layer_name || '_geometry_must_be_' || lower(geometry_type),
                       upper(geometry_type));
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON twin.%I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION twin.refuse(%L)', part || '_no_truncate', part,
                       'delete features row by row so each is logged');
        -- the roles that write features through the parent (twin.grant_app) get the new
        -- partition too: a layer added in a running twin is edited at once
        FOR grantee IN SELECT DISTINCT a.grantee::regrole::text
                         FROM pg_class c, aclexplode(c.relacl) a
                        WHERE c.oid = 'twin.features'::regclass AND a.privilege_type = 'INSERT'
                          AND a.grantee NOT IN (0, c.relowner) LOOP
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.%I TO %s', part,
                           grantee);
        END LOOP;
    END IF;
END $$;
