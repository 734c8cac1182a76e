CREATE OR REPLACE FUNCTION twin.set_context(actor text, role text, device text DEFAULT NULL,
                                 reason text DEFAULT NULL, client_time timestamptz DEFAULT NULL,
                                 edit_id text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('twin.actor', coalesce(actor, ''), true);
    PERFORM set_config('twin.role', coalesce(role, ''), true);
    PERFORM set_config('twin.device', coalesce(device, ''), true);
    PERFORM set_config('twin.reason', coalesce(reason, ''), true);
    PERFORM set_config('twin.client_time', coalesce(client_time::text, ''), true);
    PERFORM set_config('twin.edit_id', coalesce(edit_id, ''), true);
END $$;
