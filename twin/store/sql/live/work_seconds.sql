-- Working seconds from the calendar's first day (twin.work_days) to t, in the calendar's time
-- zone: the seconds before t's day and the part of its working periods before t.
CREATE OR REPLACE FUNCTION twin.work_seconds(t timestamptz) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
DECLARE
    here timestamp := t AT TIME ZONE (SELECT time_zone FROM twin.case_rules);
    d twin.work_days;
BEGIN
    SELECT * INTO d FROM twin.work_days WHERE day = here::date;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the working calendar (twin.work_days) does not reach %', here::date;
    END IF;
    IF NOT d.working THEN
        RETURN d.before_s;
    END IF;
    RETURN d.before_s + coalesce((
        SELECT sum(extract(epoch FROM least(here::time, p.ends) - p.starts))
          FROM twin.work_periods p WHERE p.starts < here::time), 0);
END $$;
ALTER FUNCTION twin.work_seconds(timestamptz) SET jit = off;
