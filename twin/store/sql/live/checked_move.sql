-- A case's or an order's move between two states, checked by one rule for both loops against
-- its transitions table (twin.case_transitions, twin.order_transitions: the same columns): a
-- move the table has not is TW409 (with the moves allowed), one beyond the mover's role TW403,
-- one needing a reason or an approver (named in the context key approver_key) without it
-- TW422. Returns what else the move needs (evidence, a verdict) for its own loop to check.
CREATE OR REPLACE FUNCTION twin.checked_move(transitions regclass, what text,
                                             from_state text, to_state text, mover text,
                                             approver_key text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    roles text[];
    needs text[];
    name_en text;
    name_zh text;
    allowed jsonb;
BEGIN
    EXECUTE format('SELECT roles, needs, name_en, name_zh FROM %s '
                   'WHERE from_state = $1 AND to_state = $2', transitions)
       INTO roles, needs, name_en, name_zh USING from_state, to_state;
    IF roles IS NULL THEN
        EXECUTE format('SELECT coalesce(jsonb_agg(to_state ORDER BY to_state), ''[]'') '
                       'FROM %s WHERE from_state = $1', transitions)
           INTO allowed USING from_state;
        RAISE EXCEPTION 'a % % cannot go to %', from_state, what, to_state
            USING ERRCODE = 'TW409',
                  DETAIL = jsonb_build_object('allowed', allowed)::text;
    END IF;
    IF mover <> 'database' AND NOT mover = ANY(roles) THEN
        RAISE EXCEPTION 'a % may not move % % from % to % (roles: %)', mover,
            CASE WHEN what ~ '^[aeiou]' THEN 'an' ELSE 'a' END, what, from_state, to_state,
            array_to_string(roles, ', ') USING ERRCODE = 'TW403';
    END IF;
    IF 'reason' = ANY(needs) AND twin.context('reason') IS NULL THEN
        PERFORM twin.broken_rule('reason', NULL, format('%s needs a reason', name_en),
                                 name_zh || '须说明理由');
    END IF;
    IF 'approver' = ANY(needs) AND twin.context(approver_key) IS NULL THEN
        PERFORM twin.broken_rule('approver', NULL,
            format('%s needs the name of who approved it', name_en), name_zh || '须有审批人');
    END IF;
    RETURN needs;
END $$;
