"""Backups and byte-exact restores, shared by every file-changing action.

Originals are copied under the fix's backup directory (with their sha256 in
`manifest.json` and in the store) before anything changes; files are replaced
atomically (temp file in the same directory, fsync, rename), keeping the
original's permission bits; a restore checks every copy's hash before it
writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from agent.remedy.base import ActionContext, ApplyError, Backup, FileBackup, Plan, RefusedError, RemedyError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_text(path: Path, label: str | None = None) -> str | None:
    """A file's text exactly as stored (no newline translation); None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RefusedError(f"{label or path}: is a directory, not a file") from None
    except PermissionError:
        raise RefusedError(f"{label or path}: permission denied") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(f"{label or path}: not a UTF-8 text file") from None


def atomic_write(path: Path, data: bytes, mode: int | None, owner: tuple[int, int] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.selfheal-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o644)
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        # Replaces a symlink itself rather than writing through it.
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _missing_dirs(path: Path) -> list[str]:
    """Parents of `path` that do not exist yet, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(str(parent))
        if parent.parent == parent:
            break
        parent = parent.parent
    return list(reversed(missing))


def take_backup(plan: Plan, ctx: ActionContext) -> Backup:
    """Copy every file the plan changes; refuses when a file moved on since the plan was made."""
    backup = Backup(action=plan.action, fix_id=ctx.fix_id, dir=str(ctx.backup_dir) if ctx.backup_dir else None,
                    services=list(plan.services))
    changes = [c for c in plan.changes if c.changed]
    if changes and ctx.backup_dir is None:
        raise RemedyError(f"{plan.action}: no backup directory, refusing to change files without a backup")
    for i, change in enumerate(changes):
        path = Path(change.path)
        # A directory swapped for a symlink since the plan would redirect the write: the path must still be itself.
        if path.resolve(strict=False) != path or not _inside(path, ctx.roots):
            raise RefusedError(f"{change.label} no longer resolves to {path} inside the remedy roots; plan it again")
        current = read_text(path, change.label)
        if current != change.before:
            raise RefusedError(f"{change.label} changed since the plan was made; plan the fix again")
        if current is None:
            backup.files.append(FileBackup(path=str(path), existed=False, created_dirs=_missing_dirs(path)))
            continue
        assert ctx.backup_dir is not None
        ctx.backup_dir.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        st = path.stat()
        copy = ctx.backup_dir / f"{i:03d}-{path.name}"
        atomic_write(copy, data, 0o600)
        digest = sha256(data)
        if sha256(copy.read_bytes()) != digest:
            raise RemedyError(f"backup of {change.label} did not read back identically; nothing was changed")
        backup.files.append(FileBackup(path=str(path), existed=True, sha256=digest, size=len(data),
                                       mode=stat.S_IMODE(st.st_mode), saved=str(copy)))
    if ctx.backup_dir is not None and backup.files:
        ctx.backup_dir.mkdir(parents=True, exist_ok=True)
        manifest = ctx.backup_dir / "manifest.json"
        atomic_write(manifest, json.dumps(backup.model_dump(mode="json"), indent=2).encode(), 0o600)
    return backup


def apply_plan(plan: Plan, ctx: ActionContext) -> Backup:
    """Back up, record the backup, change the files, run the commands; on any failure restore and raise ApplyError."""
    from agent.remedy.process import command_timeout, run_argv

    commands = plan.commands + [_restart_argv(ctx, s) for s in plan.services]
    backup = take_backup(plan, ctx)
    if ctx.on_backup is not None:
        ctx.on_backup(backup)
    changes = [c for c in plan.changes if c.changed]
    try:
        for change, fb in zip(changes, backup.files, strict=True):
            path = Path(change.path)
            for d in fb.created_dirs:
                os.mkdir(d)
            data = change.after.encode("utf-8")
            owner = None
            if fb.existed:
                st = path.stat()
                owner = (st.st_uid, st.st_gid)
            atomic_write(path, data, fb.mode if fb.existed else (change.mode if change.mode is not None else 0o644),
                         owner)
            fb.after_sha256 = sha256(data)
        for argv in commands:
            run = run_argv(argv, command_timeout(ctx.cfg))
            backup.commands.append(run)
            if not run.ok:
                raise ApplyError(f"{plan.action}: {run.describe()}")
    except ApplyError as exc:
        _undo(backup, ctx)
        raise ApplyError(f"{exc}; restored what had changed", backup) from None
    except OSError as exc:
        _undo(backup, ctx)
        raise ApplyError(f"{plan.action}: cannot write {exc.filename or ''}: {exc.strerror or exc}; "
                         "restored what had changed", backup) from None
    return backup


def _undo(backup: Backup, ctx: ActionContext) -> None:
    restore(backup, ctx, restart=False)


def _restart_argv(ctx: ActionContext, service: str) -> list[str]:
    svc = ctx.cfg.remedy.services.get(service)
    if svc is None or not svc.restart:
        raise RefusedError(f"service {service!r} has no restart command configured (remedy.services.{service}.restart)")
    return list(svc.restart)


def restore(backup: Backup, ctx: ActionContext, *, restart: bool = True) -> list[str]:
    """Put every file back exactly as it was (and remove files the fix created); one line per thing done."""
    from agent.remedy.process import command_timeout, run_argv

    copies: dict[str, bytes] = {}
    for fb in backup.files:
        if fb.existed:
            if not fb.saved:
                raise RemedyError(f"backup of {fb.path} has no copy; cannot restore")
            try:
                data = Path(fb.saved).read_bytes()
            except OSError as exc:
                raise RemedyError(f"backup copy {fb.saved} is unreadable ({exc.strerror}); nothing was restored") from None
            if sha256(data) != fb.sha256:
                raise RemedyError(f"backup copy {fb.saved} does not match its sha256; nothing was restored")
            copies[fb.path] = data
    notes: list[str] = []
    for fb in reversed(backup.files):
        path = Path(fb.path)
        label = ctx.label(path)
        if fb.existed:
            owner = None
            try:
                st = path.lstat()
                owner = (st.st_uid, st.st_gid)
            except FileNotFoundError:
                pass
            atomic_write(path, copies[fb.path], fb.mode, owner)
            if sha256(path.read_bytes()) != fb.sha256:
                raise RemedyError(f"{label}: restored content does not match the backup's sha256")
            notes.append(f"restored {label} ({fb.size} bytes, sha256 {fb.sha256[:12]})")
        else:
            if path.is_symlink() or path.exists():
                path.unlink()
                notes.append(f"removed {label} (created by the fix)")
            for d in reversed(fb.created_dirs):
                try:
                    os.rmdir(d)
                    notes.append(f"removed directory {ctx.label(Path(d))}")
                except OSError:
                    pass
    for run in backup.commands:
        if run.argv and not any(run.argv == _safe_restart(ctx, s) for s in backup.services):
            notes.append(f"not reversible: {' '.join(run.argv)} ran")
    if restart:
        for service in backup.services:
            run = run_argv(_restart_argv(ctx, service), command_timeout(ctx.cfg))
            if not run.ok:
                raise RemedyError(f"files restored, but restarting {service} failed: {run.describe()}")
            notes.append(f"restarted {service}")
    return notes


def _safe_restart(ctx: ActionContext, service: str) -> list[str] | None:
    svc = ctx.cfg.remedy.services.get(service)
    return list(svc.restart) if svc is not None and svc.restart else None
