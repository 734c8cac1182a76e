-- Contacts of orders ended (closed or sent back) before `ended_before`: erased, each logged.
CREATE OR REPLACE FUNCTION twin.erase_callers(ended_before timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer;
BEGIN
    IF coalesce(twin.context('role'), 'database') NOT IN ('admin', 'database') THEN
        RAISE EXCEPTION 'only admins erase callers'' contacts' USING ERRCODE = 'TW403';
    END IF;
    WITH gone AS (
        UPDATE twin.order_callers c SET name = NULL, phone = NULL, erased_at = now()
          FROM twin.orders o
         WHERE o.id = c.order_id AND o.closed_at < ended_before AND c.erased_at IS NULL
        RETURNING c.order_id)
    INSERT INTO twin.contact_log (actor, role, action, order_id, detail)
    SELECT coalesce(twin.context('actor'), session_user),
           coalesce(twin.context('role'), 'database'), 'erase', order_id,
           'retention: ended before ' || ended_before
      FROM gone;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
