-- A case's rule broken: SQLSTATE TW422, the English reason as the message and the field, the
-- value and the Chinese reason in the detail, so that the API names them (422) and plain SQL
-- reads them too. Illegal moves are TW409 and moves beyond a role TW403 (twin.cases_before).
CREATE OR REPLACE FUNCTION twin.broken_rule(field text, value text, reason text,
                                            reason_zh text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', reason USING ERRCODE = 'TW422', DETAIL = jsonb_build_object(
        'field', field, 'value', value, 'reason_zh', reason_zh)::text;
END $$;
