-- A layer declared or changed in a running twin (or a layers/ file read by `twin db migrate`):
-- its partition made if new (register_layer), the spec kept as its next version, the change
-- counts told its state field, and every server told (twin_layers) to serve it at once. Only
-- admins (or the database's owner, for migrate): the service's role may not create tables,
-- so this runs as the owner. What may change is decided before (twin.layerspec.spec_changes).
CREATE OR REPLACE FUNCTION twin.put_layer_spec(spec json, source text, summary text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    layer_name text := spec ->> 'name';
    state_field text := spec #>> '{states,field}';
    next_version integer;
BEGIN
    IF coalesce(twin.context('role'), 'database') NOT IN ('admin', 'database') THEN
        RAISE EXCEPTION 'only an admin declares layers' USING ERRCODE = 'TW403';
    END IF;
    PERFORM twin.register_layer(layer_name, spec ->> 'geometry',
                                concat_ws(' ', spec ->> 'title_zh', spec ->> 'title_en'));
    SELECT coalesce(max(s.version), 0) + 1 INTO next_version
      FROM twin.layer_specs s WHERE s.layer = layer_name;
    INSERT INTO twin.layer_specs (layer, version, spec, source, changed_by, summary)
    VALUES (layer_name, next_version, spec, source,
            coalesce(twin.context('actor'), session_user), summary);
    -- a layer's state field never changes once it has changes, so only a new one is added
    -- (the counts of a layer without changes need no recount)
    UPDATE twin.change_counts_basis b
       SET state_fields = b.state_fields || jsonb_build_object(layer_name, state_field)
     WHERE state_field IS NOT NULL AND NOT b.state_fields ? layer_name;
    PERFORM pg_notify('twin_layers', layer_name);
    RETURN next_version;
END $$;
