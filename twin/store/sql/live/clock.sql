-- When a change happens: the transaction's start, unless the owner of schema twin (loading a
-- generated history, `twin sample --history`) set twin.clock; the application role cannot
-- (CREATE on schema twin is its owner's and superusers'; the application role has USAGE only).
-- In SQL, which the planner inlines into the triggers' cached plans: as PL/pgSQL, called from
-- features_before and features_after, its expressions were planned again on every call.
CREATE OR REPLACE FUNCTION twin.clock() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN twin.context('clock') IS NOT NULL
                     AND has_schema_privilege(session_user, 'twin', 'CREATE')
                THEN twin.context('clock')::timestamptz ELSE now() END $$;
