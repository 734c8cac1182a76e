-- The history triggers find rows by key: a feature's versions, a change by id, the grid under
-- a point. PL/pgSQL keeps each statement's plan for the session, and a plan made while a table
-- was new (no statistics, a handful of pages) scans the whole table; the table grows and the
-- plan stays. A scale-20 sample load, planned so on empty tables, scanned the log once per
-- row and took over 14 minutes; a server's pooled connections, first used on a new twin, would
-- slow down the same way as the log grew. Without sequential scans these plans use the
-- indexes whatever the statistics said when they were made. The setting holds for what the
-- functions call (twin.code_at, twin.reassign, the counts' statement trigger) and ends with them.
-- JIT goes too: the planner prices a forbidden scan at 10^10, which passed jit_above_cost and
-- had LLVM compile every one-row lookup (a load 20 times slower than with the scans).
ALTER FUNCTION twin.features_before() SET enable_seqscan = off SET jit = off;
ALTER FUNCTION twin.features_after() SET enable_seqscan = off SET jit = off;
ALTER FUNCTION twin.add_counts(bigint[]) SET enable_seqscan = off SET jit = off;
