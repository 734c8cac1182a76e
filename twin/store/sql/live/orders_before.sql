-- The hotline's rules, enforced whatever the path (API, import, Open311, plain SQL): an order
-- starts received, its clocks run from the city system's received time by its duty (首办,
-- 兜底, 指定) and kind; its state moves only as twin.order_transitions allows, by the roles
-- named, with what each move needs. Accepting (签收) an order that needs street work files
-- its case, or joins the case of the same matter called in before (same kind and category,
-- within repeat_distance_m and repeat_days). A reply waits for the case's handling; the
-- return visit's verdict closes the order or re-opens it (重办, its own deadline, a warning).
CREATE OR REPLACE FUNCTION twin.orders_before() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stamp timestamptz := twin.clock();
    role text := coalesce(twin.context('role'), 'database');
    rules twin.hotline_rules;
    duty twin.order_duties;
    kind twin.order_kinds;
    needs text[];  -- what the move needs beyond a reason and an approver
    found_case twin.cases;
    new_case bigint;
BEGIN
    SELECT * INTO rules FROM twin.hotline_rules;
    SELECT * INTO duty FROM twin.order_duties WHERE code = NEW.duty;
    SELECT * INTO kind FROM twin.order_kinds WHERE code = NEW.kind;
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'received' THEN
            PERFORM twin.broken_rule('state', NEW.state, 'an order starts received',
                                     '工单须从受理开始');
        END IF;
        IF NEW.received_at > stamp + interval '5 minutes' THEN
            PERFORM twin.broken_rule('received_at', NEW.received_at::text,
                'an order cannot be received in the future', '受理时间不能晚于当前时间');
        END IF;
        NEW.version := 1;
        NEW.accepted_at := NULL; NEW.contacted_at := NULL; NEW.replied_at := NULL;
        NEW.closed_at := NULL; NEW.rehandle_due := NULL; NEW.visit_due := NULL;
        NEW.verdict := NULL; NEW.warning := false; NEW.reopened := 0; NEW.extended := '{}';
        NEW.case_id := NULL; NEW.caller_changes := 0;
    ELSE
        IF NEW.id <> OLD.id OR NEW.order_number <> OLD.order_number THEN
            PERFORM twin.broken_rule('order_number', NEW.order_number,
                                     'an order keeps its number', '工单编号不可更改');
        END IF;
        -- what only the loop writes
        NEW.accepted_at := OLD.accepted_at; NEW.contacted_at := OLD.contacted_at;
        NEW.replied_at := OLD.replied_at; NEW.closed_at := OLD.closed_at;
        NEW.rehandle_due := OLD.rehandle_due; NEW.visit_due := OLD.visit_due;
        NEW.warning := OLD.warning; NEW.reopened := OLD.reopened;
        NEW.repeat_of := OLD.repeat_of;
        IF NEW.state = OLD.state THEN
            NEW.verdict := OLD.verdict;
            NEW.case_id := OLD.case_id;
        END IF;
        IF OLD.state <> 'received' AND (NEW.kind <> OLD.kind OR NEW.duty <> OLD.duty
               OR NEW.received_at <> OLD.received_at
               OR NEW.category IS DISTINCT FROM OLD.category
               OR NEW.geom IS DISTINCT FROM OLD.geom) THEN
            PERFORM twin.broken_rule(CASE WHEN NEW.geom IS DISTINCT FROM OLD.geom THEN 'geometry'
                                          ELSE 'kind' END, NULL,
                'an order''s type, rule, category and place are corrected before it is accepted',
                '工单类型、规则、类别和位置只能在签收前更正');
        END IF;
    END IF;

    -- the clocks (again when a correction before acceptance changes what they run from)
    IF TG_OP = 'INSERT' OR NEW.kind <> OLD.kind OR NEW.duty <> OLD.duty
       OR NEW.received_at <> OLD.received_at THEN
        NEW.accept_due := twin.add_work(NEW.received_at, duty.accept_limit);
        NEW.contact_due := twin.add_work(NEW.received_at, duty.contact_limit);
        NEW.handle_due := twin.add_work(NEW.received_at,
                                        coalesce(duty.handle_limit, kind.handle_limit));
        FOR i IN 1 .. cardinality(NEW.extended) LOOP
            NEW.handle_due := twin.add_work(NEW.handle_due, NEW.extended[i]);
        END LOOP;
    ELSE
        NEW.accept_due := OLD.accept_due; NEW.contact_due := OLD.contact_due;
        IF NEW.extended IS DISTINCT FROM OLD.extended THEN  -- an extension, approved
            IF cardinality(NEW.extended) <> cardinality(OLD.extended) + 1
               OR NEW.extended[1:cardinality(OLD.extended)] IS DISTINCT FROM OLD.extended THEN
                PERFORM twin.broken_rule('extended', array_to_string(NEW.extended, ','),
                    'extensions are granted one at a time and kept', '延期逐次批准并保留');
            END IF;
            IF NEW.extended[cardinality(NEW.extended)] !~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$'
               OR NEW.extended[cardinality(NEW.extended)] ~ '^0+(\.0+)?[hd]$' THEN
                PERFORM twin.broken_rule('by', NEW.extended[cardinality(NEW.extended)],
                    'an extension is <n>h working hours or <n>d working days',
                    '延期格式为<n>h或<n>d');
            END IF;
            IF role NOT IN ('dispatcher', 'database') THEN
                RAISE EXCEPTION 'a % may not extend an order (dispatcher)', role
                    USING ERRCODE = 'TW403';
            END IF;
            IF OLD.state NOT IN ('received', 'accepted', 'contacted') THEN
                PERFORM twin.broken_rule('state', OLD.state,
                    format('a %s order has no handling deadline to extend', OLD.state),
                    '当前状态无可延期的办理时限');
            END IF;
            IF twin.context('reason') IS NULL THEN
                PERFORM twin.broken_rule('reason', NULL, 'an extension needs a reason',
                                         '延期须说明理由');
            END IF;
            IF twin.context('order_approver') IS NULL THEN
                PERFORM twin.broken_rule('approver', NULL,
                    'an extension needs the name of who approved it', '延期须有审批人');
            END IF;
            NEW.handle_due := twin.add_work(OLD.handle_due,
                                            NEW.extended[cardinality(NEW.extended)]);
            IF NEW.handle_due > twin.add_work(NEW.received_at, rules.max_extension) THEN
                PERFORM twin.broken_rule('by', NEW.extended[cardinality(NEW.extended)],
                    format('the handling deadline may not go past %s working time after the '
                           'order was received', rules.max_extension),
                    format('办理时限延期后不得超过受理后%s', rules.max_extension));
            END IF;
        ELSE
            NEW.handle_due := OLD.handle_due;
        END IF;
    END IF;

    -- the place: derived codes, and the first call about the same matter nearby
    IF TG_OP = 'INSERT' OR NEW.geom IS DISTINCT FROM OLD.geom THEN
        IF NEW.geom IS NOT NULL AND NEW.placed_by IS NULL THEN
            PERFORM twin.broken_rule('placed_by', NULL, 'say how the order was placed',
                                     '须说明定位方式');
        END IF;
        IF NEW.geom IS NULL THEN
            NEW.placed_by := NULL; NEW.placed_feature := NULL;
        END IF;
        NEW.grid_code := twin.code_at('micro_grids', NEW.geom);
        NEW.area_code := twin.code_at('residential_areas', NEW.geom);
        NEW.subdistrict_code := twin.subdistrict_of(NEW.grid_code, NEW.area_code, NEW.geom);
        NEW.repeat_of := (
            SELECT coalesce(o.repeat_of, o.id) FROM twin.orders o
             WHERE NEW.geom IS NOT NULL AND NEW.category IS NOT NULL
               AND o.kind = NEW.kind AND o.category = NEW.category
               AND o.id IS DISTINCT FROM NEW.id AND o.state <> 'returned'
               AND o.received_at BETWEEN NEW.received_at - rules.repeat_days * interval '1 day'
                                     AND NEW.received_at
               AND o.geom && ST_Expand(NEW.geom, rules.repeat_distance_m / 50000.0)
               AND ST_DWithin(o.geom::geography, NEW.geom::geography, rules.repeat_distance_m)
             ORDER BY o.received_at, o.id LIMIT 1);
    END IF;

    IF TG_OP = 'UPDATE' AND NEW.state <> OLD.state THEN
        needs := twin.checked_move('twin.order_transitions', 'order', OLD.state, NEW.state, role,
                                   'order_approver');
        IF 'verdict' = ANY(needs) THEN
            IF NEW.verdict IS NULL OR (NEW.state = 'closed') = (NEW.verdict = 'dissatisfied') THEN
                PERFORM twin.broken_rule('verdict', NEW.verdict,
                    'a return visit closes the order when the caller is satisfied or basically '
                    'satisfied, and re-opens it when dissatisfied',
                    '回访满意或基本满意则办结,不满意则重办');
            END IF;
        ELSE
            NEW.verdict := OLD.verdict;
        END IF;
        CASE NEW.state
            WHEN 'accepted' THEN
                IF (NEW.category IS NOT NULL OR NEW.address <> '') AND NEW.geom IS NULL THEN
                    PERFORM twin.broken_rule('geometry', NULL,
                        'an order with an address or street work is placed before it is accepted',
                        '有地址或需现场处置的工单须先定位再签收');
                END IF;
                NEW.accepted_at := stamp;
                IF NEW.category IS NOT NULL AND NEW.case_id IS NULL THEN
                    -- a case already reported under this order's number, else the open case of
                    -- the first call about the same matter, else a new one
                    SELECT c.* INTO found_case FROM twin.cases c
                     WHERE c.order_number = NEW.order_number;
                    IF found_case.id IS NULL THEN
                        SELECT c.* INTO found_case FROM twin.orders o
                          JOIN twin.cases c ON c.id = o.case_id
                         WHERE NEW.repeat_of IS NOT NULL
                           AND (o.id = NEW.repeat_of OR o.repeat_of = NEW.repeat_of)
                           AND c.state IN ('reported', 'filed', 'dispatched', 'handled', 'parked')
                         ORDER BY o.received_at LIMIT 1;
                    END IF;
                    IF found_case.id IS NOT NULL THEN
                        NEW.case_id := found_case.id;
                    ELSE
                        INSERT INTO twin.cases (geom, category, source, description, order_number,
                                                feature_layer, feature_id)
                        VALUES (NEW.geom, NEW.category, 'hotline', left(NEW.words, 2000),
                                NEW.order_number,
                                CASE WHEN NEW.placed_by = 'building' THEN 'buildings' END,
                                CASE WHEN NEW.placed_by = 'building' THEN NEW.placed_feature END)
                        RETURNING id INTO new_case;
                        UPDATE twin.cases SET state = 'filed' WHERE id = new_case;
                        NEW.case_id := new_case;
                    END IF;
                END IF;
                IF NEW.case_id IS NOT NULL AND NEW.department IS NULL THEN
                    NEW.department := (SELECT department FROM twin.cases WHERE id = NEW.case_id);
                END IF;
            WHEN 'contacted' THEN
                NEW.contacted_at := stamp;
            WHEN 'replied' THEN
                SELECT * INTO found_case FROM twin.cases WHERE id = NEW.case_id;
                IF found_case.state IN ('reported', 'filed', 'dispatched') THEN
                    PERFORM twin.broken_rule('case', found_case.state,
                        format('case %s of this order is still %s: reply once it is handled',
                               found_case.id, found_case.state),
                        format('工单对应的案件%s尚未处置完毕', found_case.id));
                END IF;
                NEW.replied_at := coalesce(OLD.replied_at, stamp);
                NEW.rehandle_due := NULL;
                NEW.visit_due := twin.add_work(stamp, duty.visit_limit);
            WHEN 'reopened' THEN
                NEW.warning := true;
                NEW.reopened := OLD.reopened + 1;
                NEW.rehandle_due := twin.add_work(stamp, duty.rehandle_limit);
                NEW.visit_due := NULL;
            ELSE  -- closed, returned
                NEW.closed_at := stamp;
                NEW.visit_due := NULL;
                NEW.rehandle_due := NULL;
        END CASE;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        IF to_jsonb(NEW) - 'version' - 'changed_at' = to_jsonb(OLD) - 'version' - 'changed_at' THEN
            RETURN NULL;  -- nothing changed: no new version, no event
        END IF;
        NEW.version := OLD.version + 1;
    END IF;
    NEW.changed_at := stamp;
    RETURN NEW;
END $$;
ALTER FUNCTION twin.orders_before() SET jit = off;
CREATE OR REPLACE TRIGGER orders_before BEFORE INSERT OR UPDATE ON twin.orders
    FOR EACH ROW EXECUTE FUNCTION twin.orders_before();
