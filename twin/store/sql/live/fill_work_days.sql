-- twin.work_days from the calendar: every day of 2000-2100, whether it is a working day and
-- the working seconds before it. Run when the calendar changes (twin.work_days_stale) and by
-- twin db migrate, which also fills what older rows lack (a move's hours in its stage).
CREATE OR REPLACE FUNCTION twin.fill_work_days() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    per_day double precision := (SELECT coalesce(sum(extract(epoch FROM ends - starts)), 0)
                                   FROM twin.work_periods);
BEGIN
    DELETE FROM twin.work_days;
    INSERT INTO twin.work_days (day, working, before_s)
    SELECT day, working, coalesce(sum(CASE WHEN working THEN per_day ELSE 0 END) OVER (
               ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
      FROM (SELECT g::date AS day, coalesce(c.working, extract(isodow FROM g) < 6) AS working
              FROM generate_series(date '2000-01-01', date '2100-12-31', interval '1 day') g
              LEFT JOIN twin.calendar_days c ON c.day = g::date) d;
    IF EXISTS (SELECT FROM twin.case_events WHERE action = 'transition'
                                              AND stage_hours IS NULL) THEN
        ALTER TABLE twin.case_events DISABLE TRIGGER case_events_append_only;
        UPDATE twin.case_events
           SET stage_hours = extract(epoch FROM twin.work_between(
                   (changed -> 'stage_started' ->> 0)::timestamptz, server_time)) / 3600
         WHERE action = 'transition' AND stage_hours IS NULL;
        ALTER TABLE twin.case_events ENABLE TRIGGER case_events_append_only;
    END IF;
END $$;
