-- A subdistrict's micro-grids found by its code (twin.users: what a subdistrict's user reads
-- is limited to them, on every request): without it, a scan of every grid, 29 ms at a
-- district's 52,600. Partial, as the address index: the other layers' partitions keep an
-- empty index and no write pays for it.
CREATE INDEX features_grid_subdistrict_idx ON twin.features (subdistrict_code)
    WHERE layer = 'micro_grids';
