-- Every change of the cases' rules (categories, departments, squads, the calendar, the
-- loop's distances) is kept, with who made it and why.
CREATE OR REPLACE FUNCTION twin.log_rules() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO twin.rule_changes (actor, role, reason, rule_table, operation, old_values,
                                   new_values)
    VALUES (coalesce(twin.context('actor'), session_user),
            coalesce(twin.context('role'), 'database'), twin.context('reason'), TG_TABLE_NAME,
            lower(TG_OP), CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER departments_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.departments FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER squads_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.squads FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER case_categories_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.case_categories FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER calendar_days_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.calendar_days FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER work_periods_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.work_periods FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER case_rules_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.case_rules FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER order_kinds_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.order_kinds FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER order_duties_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.order_duties FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
CREATE OR REPLACE TRIGGER hotline_rules_logged AFTER INSERT OR UPDATE OR DELETE
    ON twin.hotline_rules FOR EACH ROW EXECUTE FUNCTION twin.log_rules();
