"""HTTP ingest, the read API, the dashboard (FastAPI, `selfheal serve`) and the shipper (`selfheal run --ship-to`).

Past one machine, sensors on every host ship their signals here: `create_app(cfg)` in app.py is the service,
shipper.py the client side with its on-disk outbox.
"""
