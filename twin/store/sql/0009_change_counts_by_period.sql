-- The change counts, partitioned by period. A report of whole months sums monthly rows only,
-- but they were stored among the daily ones, about six times as many and written in the
-- same order (a day's rows, then its month's): at 10,000,000 changes half a year's 682,000
-- monthly rows lay on 94,000 of the table's pages and reading them was most of a report's
-- second. Each period in its own partition, the months take a few thousand pages.
ALTER TABLE twin.change_counts RENAME TO change_counts_0002;
ALTER TABLE twin.change_counts_0002 RENAME CONSTRAINT change_counts_key TO change_counts_0002_key;
CREATE TABLE twin.change_counts
    (LIKE twin.change_counts_0002 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY LIST (period);
ALTER TABLE twin.change_counts ADD CONSTRAINT change_counts_key UNIQUE NULLS NOT DISTINCT
    (period, day, layer, grid_code, area_code, actor, role, operation, state_from, state_to);
CREATE TABLE twin.change_counts_month PARTITION OF twin.change_counts FOR VALUES IN ('month');
CREATE TABLE twin.change_counts_day PARTITION OF twin.change_counts FOR VALUES IN ('day');
INSERT INTO twin.change_counts SELECT * FROM twin.change_counts_0002 ORDER BY period, day;
DROP TABLE twin.change_counts_0002;
