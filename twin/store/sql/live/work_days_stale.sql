-- The calendar changed: its working days and seconds again (twin.fill_work_days).
CREATE OR REPLACE FUNCTION twin.work_days_stale() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM twin.fill_work_days();
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER calendar_days_work_days AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON twin.calendar_days FOR EACH STATEMENT EXECUTE FUNCTION twin.work_days_stale();
CREATE OR REPLACE TRIGGER work_periods_work_days AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON twin.work_periods FOR EACH STATEMENT EXECUTE FUNCTION twin.work_days_stale();
