-- Real data in (issue 21): a feature keeps the id its source file gave it, so importing the
-- same file again updates what changed and nothing else; each import is a row, and each
-- change it made carries its id, so that it can be read and reverted as one unit.
ALTER TABLE twin.features ADD COLUMN source_id text;
CREATE UNIQUE INDEX features_source_idx ON twin.features (layer, source_id)
    WHERE source_id IS NOT NULL;
ALTER TABLE twin.feature_versions ADD COLUMN source_id text;

CREATE TABLE twin.imports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    layer       text NOT NULL REFERENCES twin.layers (name),
    file        text NOT NULL,
    actor       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    read        integer NOT NULL DEFAULT 0 CHECK (read >= 0),
    inserted    integer NOT NULL DEFAULT 0 CHECK (inserted >= 0),
    updated     integer NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged   integer NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    deleted     integer NOT NULL DEFAULT 0 CHECK (deleted >= 0),
    skipped     integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    options     jsonb NOT NULL DEFAULT '{}'
);

ALTER TABLE twin.changes ADD COLUMN import_id bigint;
CREATE INDEX changes_import_idx ON twin.changes (import_id, id) WHERE import_id IS NOT NULL;
