-- Read-only views over the history: what `selfheal sql` users and the chat agent's SQL tool query.
-- Columns are listed explicitly (never `*`) so a later migration adding a column to a table cannot
-- change a view's shape under its readers.

CREATE VIEW v_issue_events AS
SELECT seq, issue_id, ts, status, event, reason, signal_id, chain_id, fix_id, cycle_id, attrs
FROM issue_events;

CREATE VIEW v_issues AS
SELECT i.id, i.num, i.fingerprint, i.kind, i.title, i.source, i.service, i.host, i.first_signal, i.opened_at,
       e.status,
       e.last_change,
       CASE WHEN e.status = 'resolved' THEN e.resolved_at END AS resolved_at,
       e.events,
       e.reopened,
       (SELECT count(*) FROM occurrences o WHERE o.issue_id = i.id) AS occurrences
FROM issues i
JOIN (
    SELECT issue_id,
           arg_max(status, seq) AS status,
           max(ts) AS last_change,
           max(ts) FILTER (WHERE status = 'resolved') AS resolved_at,
           count(*) AS events,
           count(*) FILTER (WHERE event IN ('recurrence', 'reopened')) AS reopened
    FROM issue_events GROUP BY issue_id
) e ON e.issue_id = i.id;

CREATE VIEW v_signals AS
SELECT s.id, s.seq, s.ts, s.source, s.service, s.host, s.level, s.message, s.value, s.attrs, s.fingerprint,
       t.verdict, t.issue_id, t.rule, t.reason
FROM signals s
LEFT JOIN triage_results t ON t.signal_id = s.id;

CREATE VIEW v_triage AS
SELECT signal_id, fingerprint, template, verdict, issue_id, rule, reason, ts
FROM triage_results;

CREATE VIEW v_fingerprints AS
SELECT fingerprint, source, service, template, first_seen
FROM fingerprints;

CREATE VIEW v_occurrences AS
SELECT issue_id, signal_id, ts, verdict
FROM occurrences;

CREATE VIEW v_chains AS
SELECT c.id, c.issue_id, c.created_at, c.analyst, c.mode, c.passed,
       (SELECT n->>'statement' FROM unnest(json_extract(c.chain, '$.nodes[*]')) t(n)
         WHERE n->>'id' = c.chain->>'$.symptom') AS symptom_statement,
       (SELECT n->>'statement' FROM unnest(json_extract(c.chain, '$.nodes[*]')) t(n)
         WHERE n->>'id' = c.chain->>'$.root') AS root_statement,
       (SELECT n->>'category' FROM unnest(json_extract(c.chain, '$.nodes[*]')) t(n)
         WHERE n->>'id' = c.chain->>'$.root') AS root_category,
       json_array_length(c.chain->'$.links') AS links,
       c.chain->>'$.fix.action' AS fix_action,
       c.chain->>'$.fix.effect' AS fix_effect,
       c.chain->>'$.fix.description' AS fix_description,
       c.chain
FROM chains c;

CREATE VIEW v_gate_results AS
SELECT seq, chain_id, issue_id, ts, passed, elapsed_ms,
       (checks->>'$.reproduce.passed')::BOOLEAN AS reproduce_passed,
       checks->>'$.reproduce.reason' AS reproduce_reason,
       (checks->>'$.archive.passed')::BOOLEAN AS archive_passed,
       checks->>'$.archive.reason' AS archive_reason,
       coalesce((checks->>'$.archive.escalated')::BOOLEAN, false) AS archive_escalated,
       checks->>'$.archive.matched' AS archive_matched,
       (checks->>'$.completeness.passed')::BOOLEAN AS completeness_passed,
       checks->>'$.completeness.reason' AS completeness_reason,
       (checks->>'$.counterfactual.passed')::BOOLEAN AS counterfactual_passed,
       checks->>'$.counterfactual.reason' AS counterfactual_reason,
       checks
FROM gate_results;

CREATE VIEW v_archive AS
SELECT a.chain_id, a.issue_id, a.resolved_at, a.outcome, a.archived_at,
       (SELECT n->>'statement' FROM unnest(json_extract(a.chain, '$.nodes[*]')) t(n)
         WHERE n->>'id' = a.chain->>'$.root') AS root_statement,
       a.chain->>'$.fix.action' AS fix_action
FROM archive a;

CREATE VIEW v_fixes AS
SELECT f.id, f.issue_id, f.chain_id, f.action, f.params, f.kind, f.created_at, f.plan,
       e.status, e.updated_at
FROM fixes f
LEFT JOIN (SELECT fix_id, arg_max(status, seq) AS status, max(ts) AS updated_at FROM fix_events GROUP BY fix_id) e
  ON e.fix_id = f.id;

CREATE VIEW v_fix_events AS
SELECT seq, fix_id, ts, status, detail
FROM fix_events;

CREATE VIEW v_verifications AS
SELECT seq, fix_id, issue_id, ts, step, passed, detail
FROM verifications;

CREATE VIEW v_rules AS
SELECT id, kind, definition, explanation, chain_id, issue_id, created_at, status
FROM rules_learned;

CREATE VIEW v_cycles AS
SELECT id, kind, started_at, ended_at
FROM cycles;
