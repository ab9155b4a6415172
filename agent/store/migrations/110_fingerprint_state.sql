-- Template-mining state of agent.fingerprint.Fingerprinter, one row per cluster, so that a new
-- process gives every message the fingerprint it had before (rows of export_state()/take_changes()).
CREATE TABLE fingerprint_state (
    fingerprint VARCHAR PRIMARY KEY,
    seq         BIGINT NOT NULL,          -- creation order
    source      VARCHAR NOT NULL,
    service     VARCHAR NOT NULL,
    founding    VARCHAR NOT NULL,         -- masked message that founded the cluster (hashed into the fingerprint)
    template    VARCHAR NOT NULL,         -- current template, gains <*> over time
    root        VARCHAR,                  -- cluster it was linked into when a word became a variable
    keys        JSON NOT NULL,            -- other masked messages that joined it
    state_version INTEGER NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
