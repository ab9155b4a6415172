-- The core history. Append-only except for sensor_state (cursors, baselines).
-- No secondary indexes: DuckDB's zone maps serve range scans, and ART indexes slow bulk inserts.
CREATE SEQUENCE seq_order;
CREATE TABLE signals (
    id          VARCHAR PRIMARY KEY,
    seq         BIGINT NOT NULL DEFAULT nextval('seq_order'),          -- ingestion order
    ts          TIMESTAMP NOT NULL,       -- UTC
    source      VARCHAR NOT NULL,
    service     VARCHAR,
    host        VARCHAR,
    level       VARCHAR NOT NULL,
    message     VARCHAR NOT NULL,
    value       DOUBLE,
    attrs       JSON,
    extra       JSON,                     -- unknown fields, kept
    fingerprint VARCHAR,
    ingested_at TIMESTAMP NOT NULL
);

CREATE TABLE fingerprints (
    fingerprint VARCHAR PRIMARY KEY,
    source      VARCHAR,
    service     VARCHAR,
    template    VARCHAR,
    first_seen  TIMESTAMP
);

CREATE TABLE triage_results (
    signal_id   VARCHAR PRIMARY KEY,
    fingerprint VARCHAR,
    template    VARCHAR,
    verdict     VARCHAR NOT NULL,
    issue_id    VARCHAR,
    rule        VARCHAR NOT NULL,
    reason      VARCHAR,
    ts          TIMESTAMP NOT NULL,       -- the signal's time
    judged_at   TIMESTAMP NOT NULL
);

CREATE TABLE issues (
    id          VARCHAR PRIMARY KEY,      -- ISS-0001
    num         INTEGER NOT NULL,
    fingerprint VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,         -- failure | warning
    title       VARCHAR NOT NULL,
    source      VARCHAR,
    service     VARCHAR,
    host        VARCHAR,
    first_signal VARCHAR,
    opened_at   TIMESTAMP NOT NULL        -- first detection
);

-- An issue's state is its latest event; nothing is overwritten.
CREATE TABLE issue_events (
    seq         BIGINT PRIMARY KEY DEFAULT nextval('seq_order'),
    issue_id    VARCHAR NOT NULL,
    ts          TIMESTAMP NOT NULL,
    status      VARCHAR NOT NULL,         -- open analysing fixing verifying needs-human resolved
    event       VARCHAR NOT NULL,         -- opened recurrence analysed escalated fixed verified resolved ...
    reason      VARCHAR,
    signal_id   VARCHAR,
    chain_id    VARCHAR,
    fix_id      VARCHAR,
    cycle_id    VARCHAR,
    attrs       JSON
);

CREATE TABLE occurrences (
    issue_id    VARCHAR NOT NULL,
    signal_id   VARCHAR NOT NULL,
    ts          TIMESTAMP NOT NULL,
    verdict     VARCHAR NOT NULL
);

CREATE TABLE chains (
    id          VARCHAR PRIMARY KEY,
    issue_id    VARCHAR,
    created_at  TIMESTAMP NOT NULL,
    analyst     VARCHAR NOT NULL,         -- offline | model:<name> | case | manual
    mode        VARCHAR,                  -- knowledge-base failure mode, when known
    chain       JSON NOT NULL,
    passed      BOOLEAN
);

-- Archive: chains whose fix was verified (or that did not hold); the gate's archive check reads these.
CREATE TABLE archive (
    chain_id    VARCHAR NOT NULL,
    issue_id    VARCHAR,
    resolved_at TIMESTAMP,
    outcome     VARCHAR NOT NULL,         -- resolved | did-not-hold
    chain       JSON NOT NULL,
    archived_at TIMESTAMP NOT NULL
);

CREATE TABLE gate_results (
    seq         BIGINT PRIMARY KEY DEFAULT nextval('seq_order'),
    chain_id    VARCHAR NOT NULL,
    issue_id    VARCHAR,
    ts          TIMESTAMP NOT NULL,
    passed      BOOLEAN NOT NULL,
    elapsed_ms  DOUBLE NOT NULL,
    checks      JSON NOT NULL
);

CREATE TABLE fixes (
    id          VARCHAR PRIMARY KEY,      -- FIX-0001
    issue_id    VARCHAR,
    chain_id    VARCHAR,
    action      VARCHAR NOT NULL,
    params      JSON,
    kind        VARCHAR NOT NULL,         -- eliminate | mitigation
    created_at  TIMESTAMP NOT NULL,
    plan        VARCHAR
);

-- A fix's life: planned, applied, rolled-back, verified, failed; rows, not overwrites.
CREATE TABLE fix_events (
    seq         BIGINT PRIMARY KEY DEFAULT nextval('seq_order'),
    fix_id      VARCHAR NOT NULL,
    ts          TIMESTAMP NOT NULL,
    status      VARCHAR NOT NULL,
    detail      VARCHAR,
    backup      JSON
);

CREATE TABLE verifications (
    seq         BIGINT PRIMARY KEY DEFAULT nextval('seq_order'),
    fix_id      VARCHAR,
    issue_id    VARCHAR,
    ts          TIMESTAMP NOT NULL,
    step        VARCHAR NOT NULL,         -- postcondition | symptom | watch
    passed      BOOLEAN NOT NULL,
    detail      VARCHAR
);

CREATE TABLE rules_learned (
    id          VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,         -- early-warning | threshold | benign
    definition  JSON NOT NULL,
    explanation VARCHAR NOT NULL,
    chain_id    VARCHAR,
    issue_id    VARCHAR,
    created_at  TIMESTAMP NOT NULL,
    status      VARCHAR NOT NULL          -- active | demoted
);

CREATE TABLE sensor_state (
    sensor      VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    value       JSON,
    updated_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (sensor, key)
);

-- A cycle is one daemon run, demo or eval run; MTTR of the latest cycle reads it.
CREATE TABLE cycles (
    id          VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    ended_at    TIMESTAMP
);

CREATE TABLE counters (
    name        VARCHAR PRIMARY KEY,
    value       BIGINT NOT NULL
);
