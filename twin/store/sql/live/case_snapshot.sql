-- What a case event keeps of the case it left: enough to read any case "as of T".
CREATE OR REPLACE FUNCTION twin.case_snapshot(c twin.cases) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'state', c.state, 'category', c.category, 'grid_code', c.grid_code,
        'area_code', c.area_code, 'squad', c.squad, 'department', c.department,
        'assignee', c.assignee, 'handled_by', c.handled_by, 'filed_at', c.filed_at,
        'closed_at', c.closed_at, 'stage_started', c.stage_started, 'stage_due', c.stage_due,
        'case_due', c.case_due, 'extension', c.extension, 'extended', to_jsonb(c.extended),
        'rework', c.rework) $$;
