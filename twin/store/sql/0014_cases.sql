-- Cases (一网统管): what is found wrong in the street and the work done on it, from report to
-- closure. The rules they follow (categories with their stage limits, departments, squads,
-- the working-time calendar) are data, loaded from data/ and edited by admins, every change
-- of them logged. A case's state moves only along twin.case_transitions; each move, and
-- every other change of a case, is an event the database writes (see twin.cases_after).

-- Who handles what: departments of the subdistrict, squads (中队) of micro-grids.
CREATE TABLE twin.departments (
    code    text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,30}$'),
    name_zh text NOT NULL,
    name_en text NOT NULL
);
-- A squad is named on its micro-grids (their `squad` attribute); its lead is a user.
CREATE TABLE twin.squads (
    code text PRIMARY KEY CHECK (length(code) BETWEEN 1 AND 64),
    lead text
);

CREATE TABLE twin.case_categories (
    code           text PRIMARY KEY CHECK (code ~ '^[CE][0-9]{2,8}$'),
    kind           text NOT NULL CHECK (kind IN ('component', 'event')),
    major_zh       text NOT NULL,
    major_en       text NOT NULL,
    name_zh        text NOT NULL,
    name_en        text NOT NULL,
    handler        text NOT NULL CHECK (handler IN ('worker', 'squad', 'department')),
    department     text NOT NULL REFERENCES twin.departments (code),
    layer          text,
    -- time limits of the stages: '<n>h' working hours, '<n>d' working days
    file_limit     text NOT NULL CHECK (file_limit ~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$'),
    dispatch_limit text NOT NULL CHECK (dispatch_limit ~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$'),
    handle_limit   text NOT NULL CHECK (handle_limit ~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$'),
    verify_limit   text NOT NULL CHECK (verify_limit ~ '^([0-9]+(\.[0-9]+)?h|[0-9]+d)$'),
    file_when_zh   text NOT NULL DEFAULT '',
    file_when_en   text NOT NULL DEFAULT '',
    close_when_zh  text NOT NULL DEFAULT '',
    close_when_en  text NOT NULL DEFAULT '',
    active         boolean NOT NULL DEFAULT true
);

-- Working time: days that differ from Monday-Friday (holidays, make-up working days 调休),
-- and the working periods of a working day, in the calendar's time zone.
CREATE TABLE twin.calendar_days (
    day     date PRIMARY KEY,
    working boolean NOT NULL,
    source  text NOT NULL DEFAULT ''
);
CREATE TABLE twin.work_periods (
    starts time NOT NULL PRIMARY KEY,
    ends   time NOT NULL,
    CHECK (ends > starts)
);
-- One row: the rules of the whole loop that are not a category's.
CREATE TABLE twin.case_rules (
    one                  boolean PRIMARY KEY DEFAULT true CHECK (one),
    time_zone            text NOT NULL DEFAULT 'Asia/Shanghai',
    verify_distance_m    real NOT NULL DEFAULT 50 CHECK (verify_distance_m > 0),
    duplicate_distance_m real NOT NULL DEFAULT 50 CHECK (duplicate_distance_m > 0)
);
INSERT INTO twin.case_rules DEFAULT VALUES;

-- Every change of the rules above: who, when, which row, before and after. Append-only.
CREATE TABLE twin.rule_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_time timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text NOT NULL,
    reason      text,
    rule_table  text NOT NULL,
    operation   text NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    old_values  jsonb,
    new_values  jsonb
);

-- The lifecycle: the only moves a case's state may make, who may make them, and what each
-- needs. A transition is named by the state it goes to.
CREATE TABLE twin.case_transitions (
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    roles       text[] NOT NULL,
    needs       text[] NOT NULL DEFAULT '{}',  -- reason, approver, evidence, duplicate_of
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO twin.case_transitions VALUES
    ('reported', 'filed', '立案', 'file', '{dispatcher}', '{}'),
    ('reported', 'not_filed', '不予立案', 'not filed', '{dispatcher}', '{reason}'),
    ('reported', 'void', '作废', 'void', '{dispatcher}', '{reason}'),
    ('filed', 'dispatched', '派遣', 'dispatch', '{dispatcher}', '{}'),
    ('filed', 'parked', '挂账', 'park', '{dispatcher}', '{reason,approver}'),
    ('filed', 'void', '作废', 'void', '{dispatcher}', '{reason}'),
    ('dispatched', 'handled', '处置', 'handle', '{worker,department,dispatcher}', '{}'),
    ('dispatched', 'filed', '回退', 'return', '{worker,department,dispatcher}', '{reason}'),
    ('dispatched', 'parked', '挂账', 'park', '{dispatcher}', '{reason,approver}'),
    ('handled', 'closed', '核查通过并结案', 'verify and close', '{dispatcher,worker}', '{evidence}'),
    ('handled', 'dispatched', '核查不通过(返工)', 'verification failed (rework)',
        '{dispatcher,worker}', '{reason,evidence}'),
    ('parked', 'filed', '解除挂账', 'unpark', '{dispatcher}', '{reason}'),
    ('parked', 'dispatched', '解除挂账并派遣', 'unpark and dispatch', '{dispatcher}', '{reason}');

CREATE TABLE twin.cases (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    version        integer NOT NULL DEFAULT 1,
    state          text NOT NULL DEFAULT 'reported' CHECK (state IN
                       ('reported', 'filed', 'not_filed', 'dispatched', 'handled', 'closed',
                        'parked', 'void')),
    geom           geometry(Point, 4326) NOT NULL,
    category       text NOT NULL REFERENCES twin.case_categories (code),
    source         text NOT NULL CHECK (source IN
                       ('worker', 'patrol', 'hotline', 'leader', 'sensor', 'resident')),
    priority       text NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'urgent')),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    photos         text[] NOT NULL DEFAULT '{}',
    feature_layer  text,
    feature_id     bigint,
    -- derived from the place, as a feature's are, and kept current when grids change
    grid_code      text,
    area_code      text,
    squad          text,
    -- where it is sent: a person (a worker or squad lead) and/or a department
    department     text REFERENCES twin.departments (code),
    assignee       text,
    handled_by     text,
    duplicate_of   bigint REFERENCES twin.cases (id),
    likely_duplicate_of bigint REFERENCES twin.cases (id),
    reported_by    text NOT NULL DEFAULT session_user,
    reported_at    timestamptz NOT NULL DEFAULT now(),
    filed_at       timestamptz,
    closed_at      timestamptz,   -- or voided / not filed: when it left the loop
    stage_started  timestamptz NOT NULL DEFAULT now(),
    stage_due      timestamptz,   -- the current stage's deadline (none when parked or ended)
    case_due       timestamptz,   -- the whole case's deadline, fixed at filing
    extension      text,          -- a requested extension of the current stage, awaiting approval
    extended       text[] NOT NULL DEFAULT '{}',  -- extensions granted, in order
    rework         integer NOT NULL DEFAULT 0,
    order_number   text UNIQUE,   -- a hotline work order's number in the city system
    CONSTRAINT cases_feature CHECK ((feature_layer IS NULL) = (feature_id IS NULL)),
    CONSTRAINT cases_geom_in_range CHECK (
        ST_X(geom) BETWEEN -180 AND 180 AND ST_Y(geom) BETWEEN -90 AND 90),
    CONSTRAINT cases_photos CHECK (array_position(photos, NULL) IS NULL)
);
CREATE INDEX cases_geom_idx ON twin.cases USING gist (geom);
CREATE INDEX cases_grid_idx ON twin.cases (grid_code);
CREATE INDEX cases_state_idx ON twin.cases (state, stage_due);
CREATE INDEX cases_filed_idx ON twin.cases (filed_at);
CREATE INDEX cases_due_idx ON twin.cases (case_due);
CREATE INDEX cases_assignee_idx ON twin.cases (assignee) WHERE assignee IS NOT NULL;
CREATE INDEX cases_open_idx ON twin.cases (category) WHERE state IN
    ('reported', 'filed', 'dispatched', 'handled');

-- Every step of every case, oldest first; written by the database, never changed.
CREATE TABLE twin.case_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id      bigint NOT NULL REFERENCES twin.cases (id),
    version      integer NOT NULL,
    action       text NOT NULL CHECK (action IN
                     ('report', 'transition', 'extension_request', 'extension_approval',
                      'extension_refusal', 'reroute', 'update')),
    from_state   text,
    to_state     text NOT NULL,
    server_time  timestamptz NOT NULL,
    client_time  timestamptz,
    actor        text NOT NULL,
    role         text NOT NULL,
    department   text,          -- the actor's department, for department users
    device       text,
    reason       text,
    approver     text,
    photos       text[] NOT NULL DEFAULT '{}',
    position     geometry(Point, 4326),
    accuracy_m   real,
    edit_id      text,
    -- the case as this event left it (state, who has it, deadlines): "as of T" reads these
    snapshot     jsonb NOT NULL,
    changed      jsonb NOT NULL DEFAULT '{}',  -- field: [old, new]
    UNIQUE (case_id, version)
);
CREATE INDEX case_events_time_idx ON twin.case_events (server_time);
CREATE INDEX case_events_case_time_idx ON twin.case_events (case_id, server_time);
CREATE INDEX case_events_rework_idx ON twin.case_events (server_time)
    WHERE from_state = 'handled' AND to_state = 'dispatched';

CREATE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE ON twin.case_events
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('case events are kept');
CREATE TRIGGER case_events_no_truncate BEFORE TRUNCATE ON twin.case_events
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('case events are kept');
CREATE TRIGGER cases_no_delete BEFORE DELETE ON twin.cases
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('a case is never deleted: void it');
CREATE TRIGGER cases_no_truncate BEFORE TRUNCATE ON twin.cases
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('a case is never deleted: void it');
CREATE TRIGGER rule_changes_append_only BEFORE UPDATE OR DELETE ON twin.rule_changes
    FOR EACH ROW EXECUTE FUNCTION twin.refuse('the rules'' log is kept');
CREATE TRIGGER rule_changes_no_truncate BEFORE TRUNCATE ON twin.rule_changes
    FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('the rules'' log is kept');

-- New roles: the command centre's dispatchers, and departments' users (with their department).
ALTER TABLE twin.users DROP CONSTRAINT users_role_check;
ALTER TABLE twin.users ADD CONSTRAINT users_role_check CHECK (role IN
    ('worker', 'planner', 'commander', 'dispatcher', 'department', 'admin'));
ALTER TABLE twin.users ADD COLUMN department text REFERENCES twin.departments (code);
ALTER TABLE twin.users ADD CONSTRAINT users_department CHECK
    ((role = 'department') = (department IS NOT NULL));

-- A case's report and transitions from tablets are received edits like a feature's.
ALTER TABLE twin.edits DROP CONSTRAINT edits_op_check;
ALTER TABLE twin.edits ADD CONSTRAINT edits_op_check CHECK (op IN
    ('create', 'update', 'replace', 'delete', 'transition'));
