"""The demo: a real local system (a web shop, a worker, a nightly job, a TLS endpoint, a flaky
dependency) that selfheal watches, breaks the way production breaks, and heals."""
