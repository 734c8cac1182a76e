-- The working time between two moments (how late a case is, in working hours). JIT off:
-- with no statistics on the calendar's small tables the planner guessed millions of rows and
-- compiled every call (1-2 s each, measured by the cases soak); the work is a few rows.
CREATE OR REPLACE FUNCTION twin.work_between(a timestamptz, b timestamptz) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(least(g.d + p.ends, s.e) - greatest(g.d + p.starts, s.s)),
                    interval '0')
      FROM (SELECT a AT TIME ZONE time_zone AS s, b AT TIME ZONE time_zone AS e
              FROM twin.case_rules) AS s,
           LATERAL (SELECT day::date AS d FROM generate_series(s.s::date, s.e::date,
                                                              interval '1 day') AS day) AS g,
           twin.work_periods p
     WHERE twin.working_day(g.d) AND least(g.d + p.ends, s.e) > greatest(g.d + p.starts, s.s)
$$;
ALTER FUNCTION twin.work_between(timestamptz, timestamptz) SET jit = off;
