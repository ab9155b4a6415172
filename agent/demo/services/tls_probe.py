"""Connect to a TLS endpoint and verify its certificate against a CA file, as a client would.

Exit 0 with `TLS OK ...` when the handshake verifies, 1 with the client's error otherwise
(the text OpenSSL gives, e.g. `certificate verify failed: certificate has expired`).
"""

from __future__ import annotations

import socket
import ssl
import sys


def main(argv: list[str] | None = None) -> int:
    host, port, cafile = (argv or sys.argv[1:])[:3]
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n")
                tls.recv(64)
                print(f"TLS OK https://{host}:{port}/health ({tls.version()})")
                return 0
    except ssl.SSLCertVerificationError as exc:
        print(f"GET https://{host}:{port}/health failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
              f"{exc.verify_message} (_ssl.c:1000)")
    except (OSError, ssl.SSLError) as exc:
        print(f"GET https://{host}:{port}/health failed: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
