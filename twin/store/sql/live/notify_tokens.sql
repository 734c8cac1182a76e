-- A server keeps the roles of the bearer tokens it has checked in memory (the read routes then
-- ask PostgreSQL for the page alone) and forgets them all when it hears twin_tokens: sent at
-- the commit of anything that could end a token's life or change its user's role (a revoked
-- or deleted token, a user disabled, changed or deleted). A new token needs no message.
CREATE OR REPLACE FUNCTION twin.notify_tokens() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('twin_tokens', '');
    RETURN NULL;
END $$;
