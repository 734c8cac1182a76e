-- Whether a day is a working day: as the calendar says (holidays, make-up working days 调休),
-- else Monday to Friday.
CREATE OR REPLACE FUNCTION twin.working_day(d date) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT working FROM twin.calendar_days WHERE day = d),
                    extract(isodow FROM d) < 6) $$;
