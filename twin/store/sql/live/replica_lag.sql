-- The standbys streaming from this server (`twin db replica add`, or any other) and how far
-- behind each is: bytes of WAL it has not replayed, and PostgreSQL's own measure of its
-- replay's lag. For /ready and /metrics: the service's role may not read the lag columns of
-- pg_stat_replication itself (pg_read_all_stats), so this runs as the owner and says no more.
CREATE OR REPLACE FUNCTION twin.replica_lag()
RETURNS TABLE (name text, state text, bytes_behind bigint, lag_s double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT application_name, state,
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
           extract(epoch FROM coalesce(replay_lag, interval '0'))::double precision
      FROM pg_stat_replication
     ORDER BY application_name
$$;
