-- Case figures without per-row loops over the calendar (measured by make bench-cases at
-- 81,460 cases): the working seconds before each day (twin.work_between becomes two
-- lookups), when each case last changed (a past period reads the cases untouched since from
-- the table, not from their events), and each move's working hours in the stage it ended
-- (the stage-time medians read a column).
CREATE TABLE twin.work_days (
    day      date PRIMARY KEY,
    working  boolean NOT NULL,
    before_s double precision NOT NULL  -- working seconds from the table's first day to this one
);
ALTER TABLE twin.cases ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX cases_changed_idx ON twin.cases (changed_at);
ALTER TABLE twin.case_events ADD COLUMN stage_hours real;
-- the stage medians of a period read this index alone
CREATE INDEX case_events_stage_idx ON twin.case_events (server_time) INCLUDE (from_state,
    stage_hours) WHERE action = 'transition';

-- what the columns say of the cases and events already there (nothing on a new twin)
ALTER TABLE twin.cases DISABLE TRIGGER USER;
UPDATE twin.cases c SET changed_at = e.last
  FROM (SELECT case_id, max(server_time) AS last FROM twin.case_events GROUP BY case_id) e
 WHERE e.case_id = c.id;
ALTER TABLE twin.cases ENABLE TRIGGER USER;
-- (each move's stage hours are filled by twin.fill_work_days, which twin db migrate runs)
