"""Probes: read-only diagnostics that turn a state of the system into `probe` signals.

    runner = ProbeRunner(cfg, clock)
    runner.run({"kind": "config_key", "file": "checkout.ini", "key": "image_cache_max_items", "service": "checkout-api"})
    -> [Signal(source="probe", message="checkout.ini: image_cache_max_items = 0", attrs={...})]

Rules every probe keeps: it never writes; it never runs a shell (argv lists,
shell=False); it times out (`probes.timeout_s`); files are read only under
`probes.roots`, after symlinks are resolved, so a link cannot lead outside;
commands only from the `probes.commands` allow-list. Message formats are fixed
(rules/knowledge/README.md) because knowledge-base regexes and recorded
incidents rely on them.
"""

from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import stat as stat_mod
import subprocess
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from agent.errors import SelfhealError
from agent.models import Signal, rfc3339

if TYPE_CHECKING:
    from agent.clock import Clock
    from agent.config import Config

_MAX_LINES = 50
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class ProbeError(SelfhealError):
    """A probe refused or failed: outside the roots, not allow-listed, unreadable, timed out."""


class ProbeRunner:
    def __init__(self, cfg: "Config", clock: "Clock | None" = None):
        from agent.analysis.redact import Redactor
        from agent.clock import SystemClock

        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.timeout = float(cfg.probes.timeout_s)
        self.roots = [cfg.path(r).resolve() for r in cfg.probes.roots]
        self.redactor = Redactor(cfg.redact)

    # ------------------------------------------------------------------ entry point

    def run(self, spec: dict[str, Any]) -> list[Signal]:
        """Run one probe spec ({"kind": ..., params..., "service"?: ..., "host"?: ...}); its facts as signals."""
        kind = spec.get("kind")
        handler = getattr(self, f"_probe_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            raise ProbeError(f"unknown probe kind {kind!r}")
        facts = handler(spec)
        now = self.clock.now()
        out = []
        for message, attrs in facts:
            out.append(Signal(ts=now, source="probe", service=spec.get("service"), host=spec.get("host"),
                              level="INFO", message=self.redactor.redact(message),
                              attrs={"probe": kind, **attrs}))
        return out

    # ------------------------------------------------------------------ paths

    def resolve(self, raw: str) -> Path:
        """A path the probe may read: under a configured root once symlinks are resolved, or ProbeError."""
        if not self.roots:
            raise ProbeError(f"probe path {raw}: no probes.roots configured, so no file may be read")
        given = Path(os.path.expandvars(str(raw))).expanduser()
        options = [given] if given.is_absolute() else [self.cfg.path(given)] + [root / given for root in self.roots]
        # The first existing candidate; for an absent file, the first one inside a root (it reads "no such file").
        chosen = next((p for p in options if p.exists()), None) or \
            next((p for p in options if self._inside(p.resolve())), options[0])
        real = chosen.resolve()
        if self._inside(real):
            return real
        raise ProbeError(f"probe path {raw}: resolves to {real}, outside probes.roots")

    def _inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    # ------------------------------------------------------------------ config_key

    def _probe_config_key(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        label = str(spec["file"])
        path = self.resolve(label)
        if not path.is_file():
            return [(f"{label}: no such file or directory", {"file": str(path)})]
        flat = flatten_config(path, self._read_text(path))
        if "key" in spec:
            key = str(spec["key"])
            value = lookup(flat, key)
            if value is None:
                return [(f"{label}: {key} is not set", {"file": str(path), "key": key, "set": False})]
            return [(f"{label}: {key} = {value}", {"file": str(path), "key": key, "value": value})]
        try:
            pattern = re.compile(str(spec["key_match"]))
        except re.error as exc:
            raise ProbeError(f"config_key key_match: invalid regular expression: {exc}") from None
        found = []
        for dotted, (bare, value) in flat.items():
            if pattern.fullmatch(bare):
                found.append((f"{label}: {bare} = {value}", {"file": str(path), "key": dotted, "value": value}))
        if not found:
            found.append((f"{label}: no key matches {spec['key_match']}", {"file": str(path), "set": False}))
        return found

    def _read_text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ProbeError(f"{path}: cannot read: {exc.strerror}") from None

    # ------------------------------------------------------------------ stat

    def _probe_stat(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        label = str(spec["path"])
        path = self.resolve(label)
        try:
            st = path.stat()
        except FileNotFoundError:
            return [(f"{label}: no such file or directory", {"path": str(path), "exists": False})]
        except OSError as exc:
            raise ProbeError(f"{path}: cannot stat: {exc.strerror}") from None
        modified = rfc3339(datetime.fromtimestamp(st.st_mtime, timezone.utc))
        owner = f"{_user(st.st_uid)}:{_group(st.st_gid)}"
        mode = f"{stat_mod.S_IMODE(st.st_mode):04o}"
        attrs: dict[str, Any] = {"path": str(path), "size": st.st_size, "mtime": modified, "mode": mode,
                                 "owner": owner, "is_dir": path.is_dir()}
        message = f"{label}: size {st.st_size} bytes, modified {modified}, mode {mode}, owner {owner}"
        if path.is_dir():
            vfs = os.statvfs(path)
            total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
            used_pct = 0.0 if total == 0 else round(100.0 * (total - vfs.f_bfree * vfs.f_frsize) / total, 1)
            inodes_used = 0.0 if vfs.f_files == 0 else round(100.0 * (vfs.f_files - vfs.f_ffree) / vfs.f_files, 1)
            message += (f", filesystem {used_pct:g}% used, {free} bytes free, inodes {inodes_used:g}% used, "
                        f"{vfs.f_favail} inodes free")
            attrs.update(fs_used_pct=used_pct, free_bytes=free, inodes_used_pct=inodes_used, inodes_free=vfs.f_favail)
        return [(message, attrs)]

    # ------------------------------------------------------------------ cert_expiry

    def _probe_cert_expiry(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        from cryptography import x509

        if "path" in spec:
            label = str(spec["path"])
            path = self.resolve(label)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return [(f"{label}: no such file or directory", {"path": str(path)})]
            except OSError as exc:
                raise ProbeError(f"{path}: cannot read: {exc.strerror}") from None
            try:
                cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
            except ValueError as exc:
                raise ProbeError(f"{path}: not a certificate: {exc}") from None
        else:
            host = str(spec["host"])
            port = int(spec.get("port") or 443)
            label = f"{host}:{port}"
            cert = x509.load_der_x509_certificate(self._peer_certificate(host, port))
        not_after = cert.not_valid_after_utc
        cn = _common_name(cert)
        now = self.clock.now()
        days = int(abs((not_after - now).total_seconds()) // 86400)
        state = f"expired {days} day{'s' if days != 1 else ''} ago" if not_after <= now \
            else f"expires in {days} day{'s' if days != 1 else ''}"
        name = f"CN={cn} " if cn else ""
        return [(f"{label}: certificate {name}notAfter={rfc3339(not_after)}, {state}",
                 {"target": label, "cn": cn, "not_after": rfc3339(not_after), "expired": not_after <= now,
                  "days": days})]

    def _peer_certificate(self, host: str, port: int) -> bytes:
        # Verification is off on purpose: the probe must read the certificate even when it no longer verifies.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((host, port), timeout=self.timeout) as sock:
                with ctx.wrap_socket(sock, server_hostname=host) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"{host}:{port}: TLS handshake failed: {exc}") from None
        if not der:
            raise ProbeError(f"{host}:{port}: no certificate presented")
        return der

    # ------------------------------------------------------------------ crontab

    def _probe_crontab(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if "file" in spec:
            path = self.resolve(str(spec["file"]))
            user = str(spec.get("user") or path.name)
            text = self._read_text(path) if path.is_file() else ""
        elif (spool := self._user_crontab(str(spec.get("user") or _user(os.getuid())))) is not None:
            # A crontab spool under the roots (Debian's /var/spool/cron/crontabs/<user>) is read as a file,
            # the same file the remedy's set_crontab edits.
            user, text = spool.name, self._read_text(spool)
        else:
            user = str(spec.get("user") or _user(os.getuid()))
            binary = shutil.which("crontab")
            if binary is None:
                raise ProbeError("crontab probe: the crontab program is not installed")
            argv = [binary, "-l"] if user == _user(os.getuid()) else [binary, "-l", "-u", user]
            proc = self._exec(argv)
            text = proc.stdout if proc.returncode == 0 else ""
        env, entries = parse_crontab(text)
        facts = [(f"crontab {user}: {line}", {"user": user, "entry": line}) for line in entries[:_MAX_LINES]]
        listing = ", ".join(f"{k}={v}" for k, v in env) if env else "(none)"
        facts.append((f"crontab {user}: environment: {listing}", {"user": user, "environment": [k for k, _ in env]}))
        if spec.get("grep"):
            try:
                pat = re.compile(str(spec["grep"]))
            except re.error as exc:
                raise ProbeError(f"crontab grep: invalid regular expression: {exc}") from None
            n = sum(1 for line in entries if pat.search(line))
            msg = f"crontab {user}: no entry matches {spec['grep']}" if n == 0 else \
                f"crontab {user}: {n} entr{'y' if n == 1 else 'ies'} match {spec['grep']}"
            facts.append((msg, {"user": user, "grep": spec["grep"], "matches": n}))
        return facts

    def _user_crontab(self, user: str) -> Path | None:
        for root in self.roots:
            candidate = root / "crontabs" / user
            if candidate.is_file() and self._inside(candidate.resolve()):
                return candidate.resolve()
        return None

    # ------------------------------------------------------------------ package_version

    def _probe_package_version(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        name = str(spec["name"])
        manager = str(spec.get("manager") or "python")
        version: str | None
        if manager == "python":
            from importlib import metadata

            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        elif manager == "dpkg":
            binary = shutil.which("dpkg-query")
            if binary is None:
                raise ProbeError("package_version: dpkg-query is not installed")
            proc = self._exec([binary, "-W", "-f=${Version}", name])
            version = proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None
        else:
            raise ProbeError(f"package_version: unknown manager {manager!r} (python or dpkg)")
        attrs = {"package": name, "manager": manager, "version": version}
        if version is None:
            return [(f"package {name} not installed", attrs)]
        return [(f"package {name} {version}", attrs)]

    # ------------------------------------------------------------------ http_get

    def _probe_http_get(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        import httpx

        url = str(spec["url"])
        if not url.startswith(("http://", "https://")):
            raise ProbeError(f"http_get: {url!r} is not an http(s) URL")
        started = time.perf_counter()
        try:
            resp = httpx.get(url, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return [(f"GET {url} -> error: {reason}", {"url": url, "error": reason})]
        latency = round(time.perf_counter() - started, 4)
        return [(f"GET {url} -> {resp.status_code}",
                 {"url": url, "status": resp.status_code, "latency_s": latency,
                  "headers": {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "server", "location")}})]

    # ------------------------------------------------------------------ command

    def _probe_command(self, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        name = str(spec["name"])
        argv = self.cfg.probes.commands.get(name)
        if not argv:
            raise ProbeError(f"command probe {name!r} is not in probes.commands")
        proc = self._exec(list(argv))
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()][:_MAX_LINES]
        attrs = {"command": name, "exit_code": proc.returncode}
        if not lines:
            return [(f"{name}: exit {proc.returncode}", attrs)]
        return [(f"{name}: {ln}", attrs) for ln in lines]

    def _exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, shell=False, capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise ProbeError(f"probe command {argv[0]} timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise ProbeError(f"probe command {argv[0]} cannot run: {exc.strerror}") from None


# --------------------------------------------------------------------------- pure helpers


def flatten_config(path: Path, text: str) -> dict[str, tuple[str, str]]:
    """dotted key -> (key as reported, value as text), for ini, yaml, json, toml and .env files."""
    suffix = path.suffix.lower()
    name = path.name.lower()
    try:
        if suffix in (".yaml", ".yml"):
            return _flatten(yaml.safe_load(text) or {})
        if suffix == ".json":
            return _flatten(json.loads(text or "{}"))
        if suffix == ".toml":
            return _flatten(tomllib.loads(text))
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProbeError(f"{path}: cannot parse as {suffix[1:]}: {exc}") from None
    if suffix == ".env" or name.startswith(".env") or name.endswith(".env"):
        return _dotenv(text)
    if "[" in text and re.search(r"^\s*\[[^\]]+\]\s*$", text, re.M):
        return _ini(path, text)
    return _dotenv(text)


def _flatten(data: Any, prefix: str = "") -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten(v, key))
            else:
                out[key] = (key, _text(v))
    return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return json.dumps(v, default=str)
    return str(v)


def _dotenv(text: str) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if line.lstrip().startswith(("#", ";")):
            continue
        m = _ENV_LINE.match(line) or re.match(r"^\s*([A-Za-z_][\w.-]*)\s*[:=]\s*(.*?)\s*$", line)
        if m:
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[m.group(1)] = (m.group(1), value)
    return out


def _ini(path: Path, text: str) -> dict[str, tuple[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string("[__top__]\n" + text, source=str(path))
    except configparser.Error as exc:
        raise ProbeError(f"{path}: cannot parse as ini: {exc}") from None
    out: dict[str, tuple[str, str]] = {}
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            dotted = key if section == "__top__" else f"{section}.{key}"
            out[dotted] = (key, value)
    return out


def lookup(flat: dict[str, tuple[str, str]], key: str) -> str | None:
    """A key by its dotted name, or by its bare name in any section."""
    if key in flat:
        return flat[key][1]
    for _dotted, (bare, value) in flat.items():
        if bare == key:
            return value
    return None


def parse_crontab(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(environment assignments, entries) of a crontab; comments and blank lines dropped."""
    env: list[tuple[str, str]] = []
    entries: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m and not re.match(r"^[\d*@]", line):
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            env.append((m.group(1), value))
        else:
            entries.append(line)
    return env, entries


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _common_name(cert: Any) -> str | None:
    from cryptography.x509.oid import NameOID

    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def run_probes(runner: ProbeRunner, specs: Iterable[dict[str, Any]]) -> list[Signal]:
    out: list[Signal] = []
    for spec in specs:
        out += runner.run(spec)
    return out
