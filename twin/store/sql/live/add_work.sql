-- When a time limit that starts at t ends: '<n>h' is n hours counted inside the working
-- periods of working days; '<n>d' is n working days counted from the next day (the day a
-- period starts is not counted, as PRC law reckons periods: 民法典 第二百零一条), ending when
-- the last one's working hours end. All in the calendar's time zone (twin.case_rules).
CREATE OR REPLACE FUNCTION twin.add_work(t timestamptz, time_limit text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    zone text := (SELECT time_zone FROM twin.case_rules);
    amount numeric := rtrim(time_limit, 'hd')::numeric;
    here timestamp := t AT TIME ZONE zone;
    d date := (t AT TIME ZONE zone)::date;
    remaining interval := amount * interval '1 hour';
    closing time := (SELECT max(ends) FROM twin.work_periods);
    counted integer := 0;
    p record;
    seg_start timestamp;
BEGIN
    IF t IS NULL OR time_limit IS NULL OR amount = 0 THEN
        RETURN t;
    END IF;
    IF closing IS NULL THEN
        RAISE EXCEPTION 'the working calendar has no working periods (twin.work_periods)';
    END IF;
    LOOP
        IF d > here::date + 3660 THEN
            RAISE EXCEPTION 'no working time in ten years after % for %', t, time_limit;
        END IF;
        IF right(time_limit, 1) = 'd' THEN
            d := d + 1;
            IF twin.working_day(d) THEN
                counted := counted + 1;
                IF counted >= amount THEN
                    RETURN (d + closing) AT TIME ZONE zone;
                END IF;
            END IF;
            CONTINUE;
        END IF;
        IF twin.working_day(d) THEN
            FOR p IN SELECT starts, ends FROM twin.work_periods ORDER BY starts LOOP
                seg_start := greatest(d + p.starts, here);
                IF d + p.ends > seg_start THEN
                    IF d + p.ends - seg_start >= remaining THEN
                        RETURN (seg_start + remaining) AT TIME ZONE zone;
                    END IF;
                    remaining := remaining - (d + p.ends - seg_start);
                END IF;
            END LOOP;
        END IF;
        d := d + 1;
    END LOOP;
END $$;
ALTER FUNCTION twin.add_work(timestamptz, text) SET jit = off;  -- as work_between
