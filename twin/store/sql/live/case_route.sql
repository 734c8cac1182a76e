-- Where a case goes, from its category and its place: to the worker of its micro-grid for
-- what a grid worker fixes, to its squad's lead for enforcement, else to the category's
-- department (which is also named when a person has it, should they return it). A grid's own
-- worker comes before a squad lead answering for many grids.
CREATE OR REPLACE FUNCTION twin.case_route(category text, grid text, squad text,
                                           OUT department text, OUT assignee text)
LANGUAGE sql STABLE AS $$
    SELECT c.department,
           CASE c.handler
               WHEN 'worker' THEN (SELECT u.name FROM twin.user_grids g
                                     JOIN twin.users u ON u.id = g.user_id
                                    WHERE g.grid_code = grid AND u.role = 'worker' AND u.active
                                    ORDER BY (SELECT count(*) FROM twin.user_grids x
                                              WHERE x.user_id = u.id), u.name LIMIT 1)
               WHEN 'squad' THEN (SELECT s.lead FROM twin.squads s WHERE s.code = squad)
           END
      FROM twin.case_categories c WHERE c.code = category $$;
