-- Callers' names and phones: the service's role cannot read twin.order_callers. Dispatchers,
-- who call back, read one caller through twin.caller(), and each read is logged (who, when,
-- which order, why); everyone else sees twin.callers_masked. Writing logs that a contact
-- changed, never its value; erasing after the retention period logs each erasure, and the
-- order and its history remain.
CREATE OR REPLACE FUNCTION twin.caller(order_no bigint, OUT name text, OUT phone text,
                                       OUT erased_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF coalesce(twin.context('role'), 'database') NOT IN ('dispatcher', 'database') THEN
        RAISE EXCEPTION 'only dispatchers read a caller''s contact' USING ERRCODE = 'TW403';
    END IF;
    SELECT c.name, c.phone, c.erased_at INTO name, phone, erased_at
      FROM twin.order_callers c WHERE c.order_id = order_no;
    INSERT INTO twin.contact_log (actor, role, action, order_id, detail)
    VALUES (coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'), 'read', order_no,
            coalesce(twin.context('reason'), ''));
END $$;
