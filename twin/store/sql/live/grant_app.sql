-- What the service's own role may do: edit features (the triggers log it), read the history and
-- its counts, keep the edits it receives, photos and the devices' outbox reports, manage users
-- and tokens, report and move cases and hotline orders and edit their rules, import files.
-- Never read callers' contacts (twin.caller() does, for dispatchers), never write the log, the versions
-- or the counts directly. (Revisions 0002-0011 wrapped this function four times, renaming
-- each to grant_app_NNNN; this is all of it.)
CREATE OR REPLACE FUNCTION twin.grant_app(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA twin TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.features, twin.users, '
                   'twin.user_grids, twin.tokens, twin.metadata TO %I', app_role);
    EXECUTE format('GRANT SELECT ON twin.changes, twin.feature_versions, twin.layers, '
                   'twin.layer_specs TO %I', app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.feature_id_seq TO %I', app_role);
    -- /ready compares the schema's revision with the one the code needs
    EXECUTE format('GRANT SELECT ON alembic_version TO %I', app_role);
    FOR part IN SELECT 'features_' || name AS t FROM twin.layers LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.%I TO %I', part.t,
                       app_role);
    END LOOP;
    EXECUTE format('GRANT SELECT ON twin.change_counts, twin.change_counts_basis, '
                   'twin.change_facts, twin.feature_counts TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.edits TO %I', app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.edits_id_seq TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON twin.photos TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.device_outboxes TO %I', app_role);
    -- cases: reported and moved along (never deleted); their rules edited by admins
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.cases TO %I', app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.cases_id_seq TO %I', app_role);
    EXECUTE format('GRANT SELECT ON twin.case_events, twin.case_transitions, '
                   'twin.rule_changes, twin.work_days TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.departments, twin.squads, '
                   'twin.case_categories, twin.calendar_days, twin.work_periods TO %I',
                   app_role);
    EXECUTE format('GRANT SELECT, UPDATE ON twin.case_rules TO %I', app_role);
    -- hotline orders: received, placed and moved along; callers only through twin.caller()
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.orders TO %I', app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.orders_id_seq TO %I', app_role);
    EXECUTE format('GRANT SELECT ON twin.order_events, twin.order_transitions, '
                   'twin.contact_log, twin.callers_masked TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON twin.order_kinds, '
                   'twin.order_duties TO %I', app_role);
    EXECUTE format('GRANT SELECT, UPDATE ON twin.hotline_rules TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.open311_clients TO %I', app_role);
    -- imports: a row each, its counts written when it ends
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.imports TO %I', app_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE twin.imports_id_seq TO %I', app_role);
END $$;
