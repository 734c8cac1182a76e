-- What each change counts as: its local day, where, who, what, and for an update that changed
-- its layer's state field, the state before and after. The one definition the counts and a
-- report's partial days share.
CREATE OR REPLACE VIEW twin.change_facts AS
SELECT c.id, c.server_time, twin.change_day(c.server_time, b.zone) AS day, c.layer,
       c.grid_code, c.area_code, c.actor, c.role, c.operation,
       CASE c.operation WHEN 'update' THEN c.old_values ->> (b.state_fields ->> c.layer)
       END AS state_from,
       CASE c.operation WHEN 'update' THEN c.new_values ->> (b.state_fields ->> c.layer)
       END AS state_to
  FROM twin.changes c,
       -- its one row; LIMIT tells the planner so, even before the table is analysed
       (SELECT zone, state_fields FROM twin.change_counts_basis LIMIT 1) AS b;
