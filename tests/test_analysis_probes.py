"""Probes on real files, a real HTTP server, a real TLS server with a self-signed certificate, real subprocesses."""

from __future__ import annotations

import http.server
import os
import re
import socket
import ssl
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.analysis.probes import ProbeError, ProbeRunner, parse_crontab
from agent.clock import FakeClock
from agent.config import Config

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def runner(tmp_path: Path, **probes) -> ProbeRunner:
    cfg = Config(probes={"roots": [str(tmp_path / "root")], **probes})
    (tmp_path / "root").mkdir(exist_ok=True)
    return ProbeRunner(cfg, FakeClock(NOW))


def messages(signals) -> list[str]:
    return [s.message for s in signals]


# --------------------------------------------------------------------------- config_key


@pytest.mark.parametrize("name,text,key,value", [
    ("checkout.ini", "[cache]\nimage_cache_max_items = 0\nttl = 60\n", "image_cache_max_items", "0"),
    ("checkout.ini", "workers = 4\n[cache]\nimage_cache_max_items = 0\n", "workers", "4"),
    ("app.yaml", "cache:\n  image:\n    max_items: 0\nworkers: 4\n", "cache.image.max_items", "0"),
    ("app.json", '{"pool": {"size": 5, "enabled": true}}', "pool.enabled", "true"),
    ("app.toml", "[db]\npool_size = 5\nurl = \"postgres://db/shop\"\n", "db.pool_size", "5"),
    (".env", "export DATABASE_URL='postgres://db/shop'\n# comment\nDEBUG=0\n", "DEBUG", "0"),
    ("app.conf", "max_connections = 100\nlisten: 0.0.0.0\n", "max_connections", "100"),
])
def test_config_key_formats(tmp_path, name, text, key, value):
    r = runner(tmp_path)
    (tmp_path / "root" / name).write_text(text)
    [sig] = r.run({"kind": "config_key", "file": name, "key": key, "service": "checkout-api"})
    assert sig.source == "probe" and sig.service == "checkout-api" and sig.level == "INFO"
    assert sig.message == f"{name}: {key} = {value}"
    assert sig.ts == NOW and sig.attrs["probe"] == "config_key" and sig.attrs["value"] == value


def test_config_key_missing_and_key_match(tmp_path):
    r = runner(tmp_path)
    (tmp_path / "root" / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 0\ncache_size_mb = 64\nworkers = 4\n")
    assert messages(r.run({"kind": "config_key", "file": "checkout.ini", "key": "DATABASE_URL"})) == \
        ["checkout.ini: DATABASE_URL is not set"]
    found = messages(r.run({"kind": "config_key", "file": "checkout.ini", "key_match": ".*cache.*"}))
    assert found == ["checkout.ini: image_cache_max_items = 0", "checkout.ini: cache_size_mb = 64"]
    assert messages(r.run({"kind": "config_key", "file": "absent.ini", "key": "x"})) == \
        ["absent.ini: no such file or directory"]


def test_probe_messages_are_redacted(tmp_path):
    r = runner(tmp_path)
    (tmp_path / "root" / "app.env").write_text("DATABASE_URL=postgres://app:hunter2@db:5432/shop\ndb_password=s3cr3t\n")
    out = messages(r.run({"kind": "config_key", "file": "app.env", "key_match": ".*"}))
    assert not any("hunter2" in m or "s3cr3t" in m for m in out)
    assert "app.env: DATABASE_URL = postgres://app:[REDACTED]@db:5432/shop" in out


# --------------------------------------------------------------------------- roots


def test_refuses_paths_outside_roots(tmp_path):
    r = runner(tmp_path)
    (tmp_path / "secret.ini").write_text("k = v\n")
    for path in (str(tmp_path / "secret.ini"), "../secret.ini", "/etc/passwd"):
        with pytest.raises(ProbeError, match="outside probes.roots"):
            r.run({"kind": "config_key", "file": path, "key": "k"})


def test_refuses_symlink_escaping_the_root(tmp_path):
    r = runner(tmp_path)
    (tmp_path / "outside.ini").write_text("k = v\n")
    (tmp_path / "root" / "link.ini").symlink_to(tmp_path / "outside.ini")
    with pytest.raises(ProbeError, match="outside probes.roots"):
        r.run({"kind": "stat", "path": "link.ini"})


def test_no_roots_configured_reads_nothing(tmp_path):
    r = ProbeRunner(Config(), FakeClock(NOW))
    with pytest.raises(ProbeError, match="no probes.roots configured"):
        r.run({"kind": "stat", "path": str(tmp_path)})


def test_unknown_kind(tmp_path):
    with pytest.raises(ProbeError, match="unknown probe kind"):
        runner(tmp_path).run({"kind": "rm"})


# --------------------------------------------------------------------------- stat


def test_stat_file_and_directory(tmp_path):
    r = runner(tmp_path)
    f = tmp_path / "root" / "app.log"
    f.write_bytes(b"x" * 1234)
    os.chmod(f, 0o640)
    mtime = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc).timestamp()
    os.utime(f, (mtime, mtime))
    [s] = r.run({"kind": "stat", "path": "app.log"})
    assert re.fullmatch(r"app\.log: size 1234 bytes, modified 2026-11-29T10:00:00Z, mode 0640, owner \S+:\S+", s.message)
    [d] = r.run({"kind": "stat", "path": str(tmp_path / "root")})
    assert re.search(r", filesystem [\d.]+% used, \d+ bytes free, inodes [\d.]+% used, \d+ inodes free$", d.message)
    assert d.attrs["is_dir"] is True and d.attrs["free_bytes"] > 0
    [gone] = r.run({"kind": "stat", "path": "nope.log"})
    assert gone.message == "nope.log: no such file or directory"


# --------------------------------------------------------------------------- certificates


def self_signed(tmp_path: Path, cn: str, not_after: datetime) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_after - timedelta(days=90))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{cn}.pem", tmp_path / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_cert_expiry_from_file(tmp_path):
    r = runner(tmp_path)
    expired, _ = self_signed(tmp_path / "root", "payments.internal", NOW - timedelta(days=3, hours=1))
    valid, _ = self_signed(tmp_path / "root", "shop.internal", NOW + timedelta(days=40, hours=2))
    [a] = r.run({"kind": "cert_expiry", "path": expired.name})
    assert a.message == (f"{expired.name}: certificate CN=payments.internal "
                         f"notAfter={(NOW - timedelta(days=3, hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}, expired 3 days ago")
    [b] = r.run({"kind": "cert_expiry", "path": valid.name})
    assert b.message.endswith("expires in 40 days") and b.attrs["expired"] is False


def test_cert_expiry_from_a_live_tls_server(tmp_path):
    """A real TLS handshake on 127.0.0.1 against a server presenting an expired self-signed certificate."""
    cert, key = self_signed(tmp_path, "localhost", NOW - timedelta(days=1, minutes=5))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        [s] = runner(tmp_path).run({"kind": "cert_expiry", "host": "127.0.0.1", "port": port})
    finally:
        t.join(timeout=5)
        listener.close()
    assert s.message.startswith(f"127.0.0.1:{port}: certificate CN=localhost notAfter=")
    assert s.message.endswith("expired 1 day ago")


def test_cert_expiry_connection_refused_is_a_probe_error(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ProbeError, match="TLS handshake failed"):
        runner(tmp_path).run({"kind": "cert_expiry", "host": "127.0.0.1", "port": port})


# --------------------------------------------------------------------------- crontab


def test_crontab_file(tmp_path):
    r = runner(tmp_path)
    (tmp_path / "root" / "report").write_text(
        "# m h dom mon dow command\nMAILTO=ops@example.com\nSHELL=/bin/bash\n15 2 * * * /opt/report/nightly-report.sh\n"
        "@reboot /opt/report/warm.sh\n")
    out = messages(r.run({"kind": "crontab", "file": "report", "user": "report", "grep": "certbot|renew"}))
    assert out == [
        "crontab report: 15 2 * * * /opt/report/nightly-report.sh",
        "crontab report: @reboot /opt/report/warm.sh",
        "crontab report: environment: MAILTO=ops@example.com, SHELL=/bin/bash",
        "crontab report: no entry matches certbot|renew",
    ]


def test_parse_crontab_env_vs_entries():
    env, entries = parse_crontab("A=1\n 0 * * * * B=2 /bin/job\n#x\nPATH=/usr/bin:/bin\n")
    assert env == [("A", "1"), ("PATH", "/usr/bin:/bin")]
    assert entries == ["0 * * * * B=2 /bin/job"]


# --------------------------------------------------------------------------- package_version


def test_package_version_python(tmp_path):
    from importlib.metadata import version

    r = runner(tmp_path)
    assert messages(r.run({"kind": "package_version", "name": "PyYAML"})) == [f"package PyYAML {version('PyYAML')}"]
    assert messages(r.run({"kind": "package_version", "name": "no-such-package-xyz"})) == \
        ["package no-such-package-xyz not installed"]


# --------------------------------------------------------------------------- http_get


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        code = 503 if self.path == "/health" else 200
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"down")

    def log_message(self, *args) -> None:
        pass


def test_http_get_real_server(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        r = runner(tmp_path)
        [s] = r.run({"kind": "http_get", "url": f"http://127.0.0.1:{port}/health"})
        [ok] = r.run({"kind": "http_get", "url": f"http://127.0.0.1:{port}/"})
    finally:
        server.shutdown()
        server.server_close()
    assert s.message == f"GET http://127.0.0.1:{port}/health -> 503" and s.attrs["status"] == 503
    assert ok.message.endswith("-> 200") and ok.attrs["latency_s"] >= 0
    [err] = r.run({"kind": "http_get", "url": f"http://127.0.0.1:{port}/health"})
    assert err.message.startswith(f"GET http://127.0.0.1:{port}/health -> error: ")


def test_http_get_rejects_other_schemes(tmp_path):
    with pytest.raises(ProbeError, match="not an http"):
        runner(tmp_path).run({"kind": "http_get", "url": "file:///etc/passwd"})


# --------------------------------------------------------------------------- command


def test_command_allow_listed_no_shell(tmp_path):
    script = "import sys; print('workers 4'); print('queue depth 12'); print(sys.argv[1])"
    r = runner(tmp_path, commands={"queue": [sys.executable, "-c", script, "$(touch /tmp/pwned-by-probe)"]})
    out = messages(r.run({"kind": "command", "name": "queue"}))
    assert out == ["queue: workers 4", "queue: queue depth 12", "queue: $(touch /tmp/pwned-by-probe)"]
    assert not Path("/tmp/pwned-by-probe").exists()


def test_command_not_allow_listed(tmp_path):
    with pytest.raises(ProbeError, match="not in probes.commands"):
        runner(tmp_path).run({"kind": "command", "name": "rm"})


def test_command_times_out(tmp_path):
    r = runner(tmp_path, commands={"slow": [sys.executable, "-c", "import time; time.sleep(10)"]}, timeout_s=0.3)
    with pytest.raises(ProbeError, match="timed out after 0.3s"):
        r.run({"kind": "command", "name": "slow"})


def test_probes_never_write(tmp_path):
    r = runner(tmp_path)
    root = tmp_path / "root"
    (root / "checkout.ini").write_text("[cache]\nimage_cache_max_items = 0\n")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*")}
    r.run({"kind": "config_key", "file": "checkout.ini", "key_match": ".*"})
    r.run({"kind": "stat", "path": "checkout.ini"})
    r.run({"kind": "crontab", "file": "checkout.ini"})
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*")}
    assert before == after
