-- Each change of an order becomes an event, written here and nowhere else, with the order as
-- it left it (state, deadlines, its case: what "as of T" reads). The caller's contact is never
-- in an event: a change of it shows as "caller": "changed". Listeners of twin_orders hear the
-- order's id when it commits (the live map and the board).
CREATE OR REPLACE FUNCTION twin.orders_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    changed jsonb := '{}';
    action text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        changed := twin.row_changes(to_jsonb(NEW), to_jsonb(OLD),
                                    '{version,changed_at,caller_changes}', NEW.geom, OLD.geom);
        IF NEW.caller_changes <> OLD.caller_changes THEN
            changed := changed || '{"caller": "changed"}';
        END IF;
    END IF;
    action := CASE
        WHEN TG_OP = 'INSERT' THEN 'receive'
        WHEN NEW.state <> OLD.state THEN 'transition'
        WHEN NEW.extended IS DISTINCT FROM OLD.extended THEN 'extension'
        WHEN NEW.geom IS DISTINCT FROM OLD.geom THEN 'place'
        WHEN NEW.caller_changes <> OLD.caller_changes THEN 'contact'
        ELSE 'update' END;
    INSERT INTO twin.order_events (order_id, version, action, from_state, to_state, server_time,
                                   actor, role, reason, approver, verdict, snapshot, changed)
    VALUES (NEW.id, NEW.version, action, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END,
            NEW.state, twin.clock(), coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'), twin.context('reason'),
            twin.context('order_approver'),
            CASE WHEN action = 'transition' THEN NEW.verdict END,
            jsonb_build_object(
                'state', NEW.state, 'kind', NEW.kind, 'duty', NEW.duty,
                'category', NEW.category, 'grid_code', NEW.grid_code,
                'area_code', NEW.area_code, 'department', NEW.department,
                'case_id', NEW.case_id, 'repeat_of', NEW.repeat_of, 'placed', NEW.geom IS NOT NULL,
                'accepted_at', NEW.accepted_at, 'contacted_at', NEW.contacted_at,
                'replied_at', NEW.replied_at, 'closed_at', NEW.closed_at,
                'accept_due', NEW.accept_due, 'contact_due', NEW.contact_due,
                'handle_due', NEW.handle_due, 'rehandle_due', NEW.rehandle_due,
                'visit_due', NEW.visit_due, 'verdict', NEW.verdict, 'warning', NEW.warning,
                'reopened', NEW.reopened),
            changed);
    PERFORM pg_notify('twin_orders', NEW.id::text);
    RETURN NULL;
END $$;
ALTER FUNCTION twin.orders_after() SET jit = off;
CREATE OR REPLACE TRIGGER orders_after AFTER INSERT OR UPDATE ON twin.orders
    FOR EACH ROW EXECUTE FUNCTION twin.orders_after();
