-- Deleting or truncating versions is refused on the table and on each of its partitions.
CREATE OR REPLACE FUNCTION twin.guard_versions(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER versions_no_delete BEFORE DELETE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION twin.refuse(%L)', part, 'versions are kept forever');
    EXECUTE format('CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON %s FOR EACH '
                   'STATEMENT EXECUTE FUNCTION twin.refuse(%L)', part, 'versions are kept forever');
END $$;
