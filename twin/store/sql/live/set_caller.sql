-- A caller's name and phone recorded or corrected (dispatchers, admins, imports): the
-- contact log says that it was written, the order's history that it changed; never the value.
-- True when it changed.
CREATE OR REPLACE FUNCTION twin.set_caller(order_no bigint, new_name text, new_phone text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    old twin.order_callers;
BEGIN
    IF coalesce(twin.context('role'), 'database') NOT IN ('dispatcher', 'admin', 'database') THEN
        RAISE EXCEPTION 'only dispatchers and admins write a caller''s contact'
            USING ERRCODE = 'TW403';
    END IF;
    SELECT * INTO old FROM twin.order_callers WHERE order_id = order_no;
    IF FOUND AND old.name IS NOT DISTINCT FROM new_name
       AND old.phone IS NOT DISTINCT FROM new_phone THEN
        RETURN false;
    END IF;
    INSERT INTO twin.order_callers (order_id, name, phone) VALUES (order_no, new_name, new_phone)
    ON CONFLICT (order_id) DO UPDATE SET name = new_name, phone = new_phone, erased_at = NULL;
    INSERT INTO twin.contact_log (actor, role, action, order_id, detail)
    VALUES (coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'), 'write', order_no,
            CASE WHEN old.order_id IS NULL THEN 'recorded' ELSE 'changed' END);
    IF old.order_id IS NOT NULL THEN  -- the order's history says that it changed
        UPDATE twin.orders SET caller_changes = caller_changes + 1 WHERE id = order_no;
    END IF;
    RETURN true;
END $$;
