-- The twin's tables: layers, features (one partition per layer), versions, the change log,
-- users. Invariants live here as constraints so that no path (API, CLI, psql) can break them.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE SCHEMA twin;

CREATE TABLE twin.layers (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,40}$'),
    geometry_type text NOT NULL CHECK (geometry_type IN
                      ('POINT', 'LINESTRING', 'POLYGON', 'MULTIPOINT', 'MULTILINESTRING',
                       'MULTIPOLYGON')),
    title         text NOT NULL
);

CREATE SEQUENCE twin.feature_id_seq;

-- Common columns for every layer; layer-specific attributes in props (checked by the layer's
-- model on the way in). grid_code/area_code are derived from geometry by trigger.
CREATE TABLE twin.features (
    id           bigint NOT NULL DEFAULT nextval('twin.feature_id_seq'),
    layer        text NOT NULL REFERENCES twin.layers (name),
    name         text,
    props        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(props) = 'object'),
    tags         text[] NOT NULL DEFAULT '{}' CHECK (array_position(tags, NULL) IS NULL),
    geom         geometry(Geometry, 4326) NOT NULL,
    grid_code    text,
    area_code    text,
    version      integer NOT NULL DEFAULT 1,
    valid_from   timestamptz NOT NULL DEFAULT now(),
    changed_by   text,
    CONSTRAINT features_geom_not_empty CHECK (NOT ST_IsEmpty(geom)),
    CONSTRAINT features_geom_valid CHECK (ST_IsValid(geom)),
    CONSTRAINT features_geom_in_range CHECK (
        ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180
        AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90),
    PRIMARY KEY (layer, id)
) PARTITION BY LIST (layer);

CREATE INDEX features_geom_idx ON twin.features USING gist (geom);
CREATE INDEX features_tags_idx ON twin.features USING gin (tags);
CREATE INDEX features_grid_idx ON twin.features (grid_code);
CREATE INDEX features_area_idx ON twin.features (area_code);
CREATE INDEX features_id_idx ON twin.features (id);

-- Every state a feature ever had, with the interval it was current: "as of T" is one query.
CREATE TABLE twin.feature_versions (
    feature_id  bigint NOT NULL,
    version     integer NOT NULL,
    layer       text NOT NULL,
    name        text,
    props       jsonb NOT NULL,
    tags        text[] NOT NULL,
    geom        geometry(Geometry, 4326) NOT NULL,
    grid_code   text,
    area_code   text,
    valid       tstzrange NOT NULL,
    change_id   bigint NOT NULL,
    changed_by  text,
    PRIMARY KEY (feature_id, version)
);
CREATE INDEX feature_versions_valid_idx ON twin.feature_versions USING gist (layer, valid);
-- "as of T in this box": versions of one feature mostly share a box, so the GiST splits them
-- by validity next and a box at a moment touches few entries.
CREATE INDEX feature_versions_geom_idx ON twin.feature_versions USING gist (geom, valid);

-- The change log: append-only (see the triggers in 0001_history.sql).
CREATE TABLE twin.changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    server_time    timestamptz NOT NULL DEFAULT now(),
    client_time    timestamptz,
    actor          text NOT NULL,
    role           text NOT NULL,
    device         text,
    operation      text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    layer          text NOT NULL,
    feature_id     bigint NOT NULL,
    version_before integer,
    version_after  integer,
    changed        text[] NOT NULL,
    old_values     jsonb,
    new_values     jsonb,
    geom_changed   boolean NOT NULL,
    geom           geometry(Geometry, 4326) NOT NULL,  -- old and new place when it moved
    grid_code      text,
    area_code      text,
    reason         text,
    edit_id        text
);
-- The feed reads in commit-safe order (tx, id): a transaction still running holds back every
-- later one (see twin.feed), so a reader paging by cursor never skips a late commit.
CREATE INDEX changes_feed_idx ON twin.changes (tx, id);
CREATE INDEX changes_layer_idx ON twin.changes (layer, tx, id);
CREATE INDEX changes_grid_idx ON twin.changes (grid_code, tx, id);
CREATE INDEX changes_area_idx ON twin.changes (area_code, tx, id);
CREATE INDEX changes_actor_idx ON twin.changes (actor, tx, id);
CREATE INDEX changes_feature_idx ON twin.changes (feature_id, id);
CREATE INDEX changes_time_idx ON twin.changes (server_time);
CREATE INDEX changes_edit_idx ON twin.changes (edit_id) WHERE edit_id IS NOT NULL;
CREATE INDEX changes_geom_idx ON twin.changes USING gist (geom);

-- People. A worker's grids are rows, so a new grid is data, never code.
CREATE TABLE twin.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.@-]{2,64}$'),
    role          text NOT NULL CHECK (role IN ('worker', 'planner', 'commander', 'admin')),
    password_hash text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE twin.user_grids (
    user_id   bigint NOT NULL REFERENCES twin.users (id) ON DELETE CASCADE,
    grid_code text NOT NULL,
    PRIMARY KEY (user_id, grid_code)
);
CREATE INDEX user_grids_grid_idx ON twin.user_grids (grid_code);

-- Bearer tokens, stored as SHA-256 of the token: a leaked table gives no usable token.
CREATE TABLE twin.tokens (
    token_hash  text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES twin.users (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX tokens_user_idx ON twin.tokens (user_id);

-- Metadata of the data set (e.g. that the sample twin is synthetic).
CREATE TABLE twin.metadata (
    key   text PRIMARY KEY,
    value jsonb NOT NULL
);
