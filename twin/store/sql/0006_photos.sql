-- Photos attached to field edits, stored once under the SHA-256 of their bytes: a tablet
-- re-sending a photo after a dropped answer finds it already here, and an edit names its
-- photos by hash. A photo is evidence: kept as uploaded, never changed nor removed.
CREATE TABLE twin.photos (
    sha256      text PRIMARY KEY CHECK (sha256 = encode(sha256(content), 'hex')),
    media_type  text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png')),
    bytes       integer NOT NULL CHECK (bytes = octet_length(content)),
    content     bytea NOT NULL,
    uploaded_by text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
-- JPEG and PNG are compressed already: store them out of line without trying again.
ALTER TABLE twin.photos ALTER COLUMN content SET STORAGE EXTERNAL;

-- For the schema's owner too (with TWIN_DATABASE_URL the service is the owner).
CREATE TRIGGER photos_kept BEFORE UPDATE OR DELETE ON twin.photos
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('a photo is evidence, kept as uploaded');
CREATE TRIGGER photos_no_truncate BEFORE TRUNCATE ON twin.photos
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('a photo is evidence, kept as uploaded');

ALTER FUNCTION twin.grant_app(text) RENAME TO grant_app_0005;
CREATE FUNCTION twin.grant_app(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM twin.grant_app_0005(app_role);
    EXECUTE format('GRANT SELECT, INSERT ON twin.photos TO %I', app_role);
END $$;
