-- The working time between two moments (how late a case is, how long a stage took): two
-- lookups in twin.work_days. JIT off: with no statistics on the calendar's small tables the
-- planner once guessed millions of rows and compiled every call (1-2 s each).
CREATE OR REPLACE FUNCTION twin.work_between(a timestamptz, b timestamptz) RETURNS interval
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF a IS NULL OR b IS NULL OR b <= a THEN
        RETURN CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE interval '0' END;
    END IF;
    RETURN (twin.work_seconds(b) - twin.work_seconds(a)) * interval '1 second';
END $$;
ALTER FUNCTION twin.work_between(timestamptz, timestamptz) SET jit = off;
