-- The lifecycle of a case, enforced whatever the path (API, CLI, plain SQL): a case starts
-- reported; its state moves only as twin.case_transitions allows, by the roles it names and
-- with what it needs; each move stamps the stage's start and computes its deadline in working
-- time from the category's limit. The fields the loop owns (deadlines, stamps, rework, the
-- handler) are the database's: written values are replaced. Place codes are derived as a
-- feature's are; an open case whose micro-grid changed goes to the new grid's worker.
CREATE OR REPLACE FUNCTION twin.cases_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stamp timestamptz := twin.clock();
    who text := coalesce(twin.context('actor'), session_user);
    role text := coalesce(twin.context('role'), 'database');
    rules twin.case_rules;
    cat twin.case_categories;
    needs text[];  -- what the move needs beyond a reason and an approver
    route record;
    evidence text[] := coalesce(twin.context('case_photos')::text[], '{}');
    seen_at geometry := ST_GeomFromEWKT(twin.context('case_position'));
    away double precision;
    open_states text[] := '{reported,filed,dispatched,handled}';
BEGIN
    SELECT * INTO rules FROM twin.case_rules;
    SELECT * INTO cat FROM twin.case_categories WHERE code = NEW.category;
    IF NOT FOUND OR NOT cat.active THEN
        PERFORM twin.broken_rule('category', NEW.category, 'no active case category has this code',
                                 '无此案件类别');
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'reported' THEN
            PERFORM twin.broken_rule('state', NEW.state, 'a case starts reported', '案件须从上报开始');
        END IF;
        NEW.version := 1;
        NEW.reported_at := stamp;
        NEW.reported_by := who;
        NEW.changed_at := stamp;
        NEW.stage_started := stamp;
        NEW.stage_due := twin.add_work(stamp, cat.file_limit);
        NEW.filed_at := NULL; NEW.closed_at := NULL; NEW.case_due := NULL;
        NEW.handled_by := NULL; NEW.rework := 0; NEW.extension := NULL; NEW.extended := '{}';
        NEW.grid_code := twin.code_at('micro_grids', NEW.geom);
        NEW.area_code := twin.code_at('residential_areas', NEW.geom);
        NEW.subdistrict_code := twin.subdistrict_of(NEW.grid_code, NEW.area_code, NEW.geom);
        NEW.squad := (SELECT f.props ->> 'squad' FROM twin.features f
                       WHERE f.layer = 'micro_grids' AND f.props ->> 'code' = NEW.grid_code
                       LIMIT 1);
        NEW.likely_duplicate_of := (
            SELECT o.id FROM twin.cases o
             WHERE o.category = NEW.category AND o.state = ANY(open_states)
               AND o.geom && ST_Expand(NEW.geom, rules.duplicate_distance_m / 50000.0)
               AND ST_DWithin(o.geom::geography, NEW.geom::geography, rules.duplicate_distance_m)
             ORDER BY ST_Distance(o.geom::geography, NEW.geom::geography), o.id LIMIT 1);
        RETURN NEW;
    END IF;

    IF NEW.id <> OLD.id THEN
        PERFORM twin.broken_rule('id', NEW.id::text, 'a case keeps its id', '案件编号不可更改');
    END IF;
    -- what only the loop writes
    NEW.reported_at := OLD.reported_at; NEW.reported_by := OLD.reported_by;
    NEW.filed_at := OLD.filed_at; NEW.closed_at := OLD.closed_at;
    NEW.stage_started := OLD.stage_started; NEW.stage_due := OLD.stage_due;
    NEW.case_due := OLD.case_due; NEW.rework := OLD.rework; NEW.handled_by := OLD.handled_by;
    NEW.likely_duplicate_of := OLD.likely_duplicate_of; NEW.source := OLD.source;
    IF (NEW.category <> OLD.category OR NOT ST_Equals(NEW.geom, OLD.geom))
       AND OLD.state <> 'reported' THEN
        PERFORM twin.broken_rule(CASE WHEN NEW.category <> OLD.category THEN 'category'
                                      ELSE 'geometry' END, NULL,
            'a case''s category and place are corrected before it is filed, not after',
            '案件类别和位置只能在立案前更正');
    END IF;

    IF NEW.state <> OLD.state THEN
        needs := twin.checked_move('twin.case_transitions', 'case', OLD.state, NEW.state, role,
                                   'case_approver');
        IF 'evidence' = ANY(needs) THEN
            IF who = OLD.handled_by THEN
                PERFORM twin.broken_rule('actor', who,
                    'verification is done by someone other than the handler',
                    '核查须由处置人以外的人进行');
            END IF;
            IF cardinality(evidence) = 0 THEN
                PERFORM twin.broken_rule('photos', '[]', 'verification needs a photo',
                                         '核查须拍照');
            END IF;
            IF seen_at IS NULL THEN
                PERFORM twin.broken_rule('position', NULL,
                    'verification needs the verifier''s position', '核查须提供核查位置');
            END IF;
            away := ST_Distance(seen_at::geography, NEW.geom::geography);
            IF away > rules.verify_distance_m THEN
                PERFORM twin.broken_rule('position', round(away::numeric, 1)::text,
                    format('verification is done within %s m of the case; this position is %s m away',
                           rules.verify_distance_m, round(away::numeric, 1)),
                    format('核查须在案件%s米范围内进行,当前距离%s米', rules.verify_distance_m,
                           round(away::numeric, 1)));
            END IF;
        END IF;
        NEW.stage_started := stamp;
        NEW.extension := NULL;
        CASE NEW.state
            WHEN 'filed' THEN
                NEW.filed_at := coalesce(OLD.filed_at, stamp);
                NEW.stage_due := twin.add_work(stamp, cat.dispatch_limit);
                NEW.case_due := coalesce(OLD.case_due, twin.add_work(twin.add_work(
                    twin.add_work(stamp, cat.dispatch_limit), cat.handle_limit), cat.verify_limit));
                IF OLD.state = 'reported' THEN  -- the proposal the dispatcher confirms or changes
                    route := twin.case_route(NEW.category, NEW.grid_code, NEW.squad);
                    IF NEW.department IS NOT DISTINCT FROM OLD.department THEN
                        NEW.department := route.department;
                    END IF;
                    IF NEW.assignee IS NOT DISTINCT FROM OLD.assignee THEN
                        NEW.assignee := route.assignee;
                    END IF;
                END IF;
            WHEN 'dispatched' THEN
                IF NEW.assignee IS NULL AND NEW.department IS NULL THEN
                    PERFORM twin.broken_rule('assignee', NULL,
                        'a case is dispatched to a person or a department', '派遣须指定处置人或部门');
                END IF;
                NEW.stage_due := twin.add_work(stamp, cat.handle_limit);
                NEW.handled_by := NULL;
                IF OLD.state = 'handled' THEN
                    NEW.rework := OLD.rework + 1;
                END IF;
            WHEN 'handled' THEN
                NEW.handled_by := who;
                NEW.stage_due := twin.add_work(stamp, cat.verify_limit);
            WHEN 'parked' THEN
                NEW.stage_due := NULL;
            ELSE  -- closed, not filed, void: out of the loop
                NEW.stage_due := NULL;
                NEW.closed_at := stamp;
        END CASE;
    ELSIF NEW.extension IS DISTINCT FROM OLD.extension
          OR NEW.extended IS DISTINCT FROM OLD.extended THEN
        IF NEW.extended IS DISTINCT FROM OLD.extended THEN  -- an approval: the asked time added
            IF OLD.extension IS NULL OR NEW.extension IS NOT NULL
               OR NEW.extended IS DISTINCT FROM OLD.extended || OLD.extension THEN
                PERFORM twin.broken_rule('extension', NEW.extension,
                    'an extension is approved as it was requested', '延期须按申请批准');
            END IF;
            IF role NOT IN ('dispatcher', 'database') THEN
                RAISE EXCEPTION 'a % may not approve an extension (dispatcher)', role
                    USING ERRCODE = 'TW403';
            END IF;
            NEW.stage_due := twin.add_work(OLD.stage_due, OLD.extension);
            NEW.case_due := twin.add_work(OLD.case_due, OLD.extension);
        ELSIF NEW.extension IS NOT NULL THEN  -- a request
            IF OLD.stage_due IS NULL OR NOT OLD.state = ANY(open_states) THEN
                PERFORM twin.broken_rule('extension', NEW.extension,
                    format('a %s case has no running deadline to extend', OLD.state),
                    '当前阶段无可延期的时限');
            END IF;
            IF NEW.extension !~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$' OR NEW.extension ~ '^0+(\.0+)?[hd]$' THEN
                PERFORM twin.broken_rule('extension', NEW.extension,
                    'an extension is <n>h working hours or <n>d working days', '延期格式为<n>h或<n>d');
            END IF;
            IF twin.context('reason') IS NULL THEN
                PERFORM twin.broken_rule('reason', NULL, 'an extension request needs a reason',
                                         '延期申请须说明理由');
            END IF;
        ELSIF role NOT IN ('dispatcher', 'database') THEN  -- a refusal
            RAISE EXCEPTION 'a % may not refuse an extension (dispatcher)', role
                USING ERRCODE = 'TW403';
        END IF;
    END IF;

    IF NOT ST_Equals(NEW.geom, OLD.geom)
       OR current_setting('twin.rederive', true) IS NOT DISTINCT FROM 'on' THEN
        NEW.grid_code := twin.code_at('micro_grids', NEW.geom);
        NEW.area_code := twin.code_at('residential_areas', NEW.geom);
        NEW.subdistrict_code := twin.subdistrict_of(NEW.grid_code, NEW.area_code, NEW.geom);
        NEW.squad := (SELECT f.props ->> 'squad' FROM twin.features f
                       WHERE f.layer = 'micro_grids' AND f.props ->> 'code' = NEW.grid_code
                       LIMIT 1);
        -- re-routed when the new grid has its own worker or squad lead
        IF NEW.grid_code IS DISTINCT FROM OLD.grid_code AND NEW.state = ANY(open_states) THEN
            route := twin.case_route(NEW.category, NEW.grid_code, NEW.squad);
            IF NEW.assignee IS NOT NULL AND route.assignee IS NOT NULL THEN
                NEW.assignee := route.assignee;
            END IF;
        END IF;
    END IF;
    IF to_jsonb(NEW) - 'version' - 'changed_at' = to_jsonb(OLD) - 'version' - 'changed_at' THEN
        RETURN NULL;  -- nothing changed: no new version, no event
    END IF;
    NEW.version := OLD.version + 1;
    NEW.changed_at := stamp;
    RETURN NEW;
END $$;
ALTER FUNCTION twin.cases_before() SET jit = off;
CREATE OR REPLACE TRIGGER cases_before BEFORE INSERT OR UPDATE ON twin.cases
    FOR EACH ROW EXECUTE FUNCTION twin.cases_before();
