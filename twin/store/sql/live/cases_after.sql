-- Each change of a case becomes an event, written here and nowhere else: what happened
-- (a report, a transition, an extension asked for, granted or refused, a re-route when its
-- grid changed, another update), who did it and from where, and the case as it left it.
-- Listeners of twin_cases hear the case's id when it commits (the live map).
CREATE OR REPLACE FUNCTION twin.cases_after() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    changed jsonb := '{}';
    action text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        changed := twin.row_changes(to_jsonb(NEW), to_jsonb(OLD), '{version,changed_at}',
                                    NEW.geom, OLD.geom);
    END IF;
    action := CASE
        WHEN TG_OP = 'INSERT' THEN 'report'
        WHEN NEW.state <> OLD.state THEN 'transition'
        WHEN NEW.extended IS DISTINCT FROM OLD.extended THEN 'extension_approval'
        WHEN NEW.extension IS NOT NULL AND NEW.extension IS DISTINCT FROM OLD.extension
            THEN 'extension_request'
        WHEN OLD.extension IS NOT NULL AND NEW.extension IS NULL THEN 'extension_refusal'
        WHEN NEW.grid_code IS DISTINCT FROM OLD.grid_code
             AND current_setting('twin.rederive', true) = 'on' THEN 'reroute'
        ELSE 'update' END;
    INSERT INTO twin.case_events (case_id, version, action, from_state, to_state, server_time,
                                  client_time, actor, role, department, device, reason,
                                  approver, photos, position, accuracy_m, edit_id, snapshot,
                                  changed, stage_hours)
    VALUES (NEW.id, NEW.version, action, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END,
            NEW.state, twin.clock(), twin.context('client_time')::timestamptz,
            coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'), twin.context('department'),
            twin.context('device'), twin.context('reason'), twin.context('case_approver'),
            coalesce(twin.context('case_photos')::text[], '{}'),
            ST_GeomFromEWKT(twin.context('case_position')),
            twin.context('case_accuracy')::real, twin.context('edit_id'),
            twin.case_snapshot(NEW), changed,
            -- a move's working hours in the stage it ends, for the stage-time figures
            CASE WHEN action = 'transition' THEN extract(epoch FROM twin.work_between(
                OLD.stage_started, NEW.stage_started)) / 3600 END);
    PERFORM pg_notify('twin_cases', NEW.id::text);
    RETURN NULL;
END $$;
ALTER FUNCTION twin.cases_after() SET jit = off;
CREATE OR REPLACE TRIGGER cases_after AFTER INSERT OR UPDATE ON twin.cases
    FOR EACH ROW EXECUTE FUNCTION twin.cases_after();
