"""Sensors: one module per kind, each turning what it watches into contract signals.

- logs.py       files and globs, across rotation and truncation, one signal per line or stack trace
- cron.py       `selfheal cron` runs (exit code, duration, output tail) and missed scheduled runs
- health.py     HTTP, TCP and command checks
- heartbeat.py  `selfheal beat` and file-mtime heartbeats; gaps
- metrics.py    numbers from commands, Prometheus endpoints and the host, against a robust baseline
- alertmanager.py  Alertmanager webhook payloads as `alert` signals
- runner.py     `sense_once(store, cfg, clock)` / `SensorRunner`: every sensor one round, failures isolated
- config.py     the `sensors:` section of selfheal.yaml (CONFIG.md is its reference)

Sensors read and write the store only through agent/store and never import
triage or anything after it.
"""
