-- What each tablet last said was still waiting in its outbox. Edits made offline are known to
-- the device alone until they arrive; every sync batch carries the device's own count of what
-- it holds besides the batch, so the command centre sees devices with unsynced edits and the
-- oldest of them, as of the device's last report. One row per device and user: the newest
-- report by the device's clock wins, so a retried request arriving late never undoes a newer.
CREATE TABLE twin.device_outboxes (
    device      text NOT NULL CHECK (length(device) BETWEEN 1 AND 200),
    actor       text NOT NULL,
    grid_codes  text[] NOT NULL DEFAULT '{}',  -- the actor's micro-grids when reported
    waiting     integer NOT NULL CHECK (waiting >= 0),
    oldest      timestamptz,                   -- device time of the oldest waiting edit
    sent_at     timestamptz NOT NULL,          -- the device's clock when it sent the report
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, actor),
    CONSTRAINT device_outboxes_oldest CHECK ((waiting = 0) = (oldest IS NULL))
);
CREATE INDEX device_outboxes_waiting_idx ON twin.device_outboxes USING gin (grid_codes)
    WHERE waiting > 0;

ALTER FUNCTION twin.grant_app(text) RENAME TO grant_app_0010;
CREATE FUNCTION twin.grant_app(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM twin.grant_app_0010(app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON twin.device_outboxes TO %I', app_role);
END $$;
