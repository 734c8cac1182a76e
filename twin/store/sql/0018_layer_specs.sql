-- Layers as data in a running twin (issue 21): each layer's spec (the TOML of layers/, as
-- JSON) is kept here version by version, so a layer can be added, or given an attribute or an
-- enum value, by an admin without a restart, and every such schema change is kept forever:
-- who, when, what changed. The newest version of a layer is the one the twin serves.
CREATE TABLE twin.layer_specs (
    layer       text NOT NULL REFERENCES twin.layers (name),
    version     integer NOT NULL CHECK (version > 0),
    -- json, not jsonb: the spec's order is its attributes' order (forms, schemas, columns)
    spec        json NOT NULL CHECK (json_typeof(spec) = 'object'),
    -- file: read from layers/<name>.toml by `twin db migrate`; admin: `twin layer add|change`
    -- or POST /layers
    source      text NOT NULL CHECK (source IN ('file', 'admin')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL,
    summary     text NOT NULL,
    PRIMARY KEY (layer, version)
);
CREATE TRIGGER layer_specs_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON twin.layer_specs
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('a layer''s schema history is kept forever');
