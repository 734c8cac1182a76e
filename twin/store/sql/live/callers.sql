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

CREATE OR REPLACE FUNCTION twin.set_caller(order_no bigint, new_name text, new_phone text)
RETURNS void
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
        RETURN;
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
END $$;

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

-- What every other role sees: 张* and 138****5678.
CREATE OR REPLACE VIEW twin.callers_masked AS
SELECT order_id,
       CASE WHEN name IS NULL THEN NULL
            ELSE left(name, 1) || repeat('*', greatest(char_length(name) - 1, 1)) END AS name,
       CASE WHEN phone IS NULL THEN NULL
            WHEN length(phone) >= 7 THEN left(phone, 3) || repeat('*', length(phone) - 7)
                                         || right(phone, 4)
            ELSE repeat('*', length(phone)) END AS phone,
       erased_at
  FROM twin.order_callers;
