-- Bulk writes logged as sets (issue 21): the log of twin.features is written once per
-- statement, from its rows (twin.features_after and its three statement triggers, in the
-- live file), no longer once per row: an import's batch of 5,000 rows inserted 5,000
-- changes one at a time, and the counts' statement trigger on the log fired for each.
DROP TRIGGER features_after ON twin.features;

-- How many features each layer holds, moved by the same trigger: an items page's
-- numberMatched reads it instead of counting the layer again.
CREATE TABLE twin.feature_counts (
    layer    text PRIMARY KEY REFERENCES twin.layers (name),
    features bigint NOT NULL
);
INSERT INTO twin.feature_counts (layer, features)
SELECT layer, count(*) FROM twin.features GROUP BY layer;
