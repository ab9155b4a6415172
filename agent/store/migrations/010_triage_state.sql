-- Triage's own memory, so a new process judges exactly as the previous one would have.

-- The fingerprint miner's clusters (agent/fingerprint.py export_state rows), upserted by fingerprint:
-- without them a new process would found new clusters and give known failures new fingerprints.
CREATE TABLE fingerprint_clusters (
    fingerprint VARCHAR PRIMARY KEY,
    seq         BIGINT NOT NULL,
    state       JSON NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

-- Consecutive failures of each check (source, service, host, attrs.check|url|metric) so far.
CREATE TABLE triage_checks (
    check_key   VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL,
    service     VARCHAR,
    host        VARCHAR,
    key         VARCHAR,
    consecutive INTEGER NOT NULL,
    last_signal VARCHAR,
    last_ts     TIMESTAMP,
    updated_at  TIMESTAMP NOT NULL
);
