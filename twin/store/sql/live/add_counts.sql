-- Add changes to the counts (sorted, so concurrent writers lock count rows in one order).
-- One generic plan per session: planning anew for each change (the planner's choice for a
-- one-element array) costs more than the insert itself.
CREATE OR REPLACE FUNCTION twin.add_counts(ids bigint[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO twin.change_counts AS t (period, day, layer, grid_code, area_code, actor, role,
                                         operation, state_from, state_to, n)
    SELECT p.period, CASE p.period WHEN 'day' THEN f.day
                                   ELSE date_trunc('month', f.day::timestamp)::date END,
           f.layer, f.grid_code, f.area_code, f.actor, f.role, f.operation, f.state_from,
           f.state_to, count(*)
      FROM twin.change_facts f CROSS JOIN (VALUES ('day'), ('month')) AS p (period)
     WHERE f.id = ANY(ids)
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
     ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ON CONFLICT ON CONSTRAINT change_counts_key DO UPDATE SET n = t.n + EXCLUDED.n;
END $$;
ALTER FUNCTION twin.add_counts(bigint[]) SET enable_seqscan = off SET jit = off;
