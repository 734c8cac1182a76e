-- Who is editing: set per transaction by twin.set_context(); plain SQL leaves it empty and
-- the change is recorded under the database user.
CREATE OR REPLACE FUNCTION twin.context(key text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('twin.' || key, true), '') $$;
