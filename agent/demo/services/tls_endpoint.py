"""The demo TLS endpoint: serves HTTPS with the certificate named in tls.ini, reloading it when the file changes.

With `auto_renew = true` it renews the certificate itself once it is within `renew_before_days`
of its notAfter (or past it), the way an ACME client renews; with `false` nothing ever replaces
an expired certificate.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.demo.services.certs import not_after, write_certificate
from agent.demo.services.common import LiveConfig, configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    cfg = LiveConfig(args.config, "tls")
    cfg.refresh()
    log = configure_logging("tls-edge", args.log)
    base = Path(args.config).parent
    cert_path, key_path = base / cfg.str("cert_file", "edge.crt"), base / cfg.str("key_file", "edge.key")
    state = {"stamp": None, "ctx": None}

    def context() -> ssl.SSLContext:
        cfg.refresh()
        if cfg.bool("auto_renew", False):
            left = not_after(cert_path) - datetime.now(timezone.utc)
            if left < timedelta(days=cfg.float("renew_before_days", 30)):
                end = write_certificate(cert_path, key_path, days=90)
                log.info("renewed certificate %s: notAfter=%s", cert_path.name, end.strftime("%Y-%m-%dT%H:%M:%SZ"))
        st = cert_path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != state["stamp"]:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_path, key_path)
            state["ctx"], state["stamp"] = ctx, stamp
            log.info("loaded certificate %s (notAfter=%s)", cert_path.name,
                     not_after(cert_path).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return state["ctx"]

    lock = threading.Lock()

    def current() -> ssl.SSLContext:
        with lock:
            return context()

    def keep_renewed() -> None:
        # An ACME client checks on its own schedule, not only when a client connects.
        while True:
            try:
                current()
            except (OSError, ValueError, ssl.SSLError) as exc:
                log.error("certificate check failed: %s", exc)
            threading.Event().wait(0.2)

    threading.Thread(target=keep_renewed, daemon=True).start()
    sock = socket.create_server(("127.0.0.1", cfg.int("port", 18443)))
    log.info("tls-edge listening on 127.0.0.1:%d (pid %d)", cfg.int("port", 18443), os.getpid())

    def serve(conn: socket.socket, addr) -> None:
        try:
            with current().wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except ssl.SSLError as exc:
            # Like nginx, a handshake the client aborts is logged below error level: the client decided.
            log.warning("TLS handshake with %s:%d failed: %s", addr[0], addr[1], exc)
        except OSError:
            pass
        finally:
            conn.close()

    try:
        while True:
            conn, addr = sock.accept()
            threading.Thread(target=serve, args=(conn, addr), daemon=True).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
