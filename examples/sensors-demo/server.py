"""The things examples/selfheal.yaml points at: a small HTTP service with /health and /metrics.

    python examples/sensors-demo/server.py [PORT]    (default 18765, on 127.0.0.1)

/health answers 200 "ok"; /metrics is Prometheus text. The TCP health check of
the example config connects to the same port.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METRICS = """# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{code="200",path="/cart"} 120
app_requests_total{code="500",path="/cart"} 3
# HELP app_queue_depth Jobs waiting.
# TYPE app_queue_depth gauge
app_queue_depth 4
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body, ctype = b"ok\n", "text/plain"
        elif self.path == "/metrics":
            body, ctype = METRICS.encode(), "text/plain; version=0.0.4"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18765
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
