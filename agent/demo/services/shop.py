"""The demo web shop: a threaded HTTP service with a database connection pool, an image cache and a log file.

Its behaviour comes from shop.ini (rendered by each deploy from a template) and runtime.ini
(limits the operators own), re-read on change: `db_pool_size` (connections a request can
hold), `threads` (requests served at once), `max_open_files` (RLIMIT_NOFILE),
`image_cache_max_items` (0 = unbounded). Memory
is capped with setrlimit(RLIMIT_AS) like a cgroup limit, so an unbounded cache ends in
MemoryError and the process exits, as a real worker does.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import sys
import threading
import time
import traceback
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.demo.services.common import LiveConfig, configure_logging


class Pool:
    """A fixed-size connection pool: requests wait up to `timeout` for a free connection."""

    def __init__(self, size: int):
        self.size = size
        self._sem = threading.BoundedSemaphore(size)
        self.in_use = 0
        self.waiting = 0
        self._lock = threading.Lock()

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            self.waiting += 1
        try:
            got = self._sem.acquire(timeout=timeout)
        finally:
            with self._lock:
                self.waiting -= 1
        if not got:
            return False
        with self._lock:
            self.in_use += 1
        return True

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._sem.release()


class Shop:
    def __init__(self, config_paths: list[str], log_path: str):
        self.cfg = LiveConfig(config_paths, "shop")
        self.log_path = log_path
        self.lock = threading.Lock()
        self.pool = Pool(1)
        self.cache: OrderedDict[str, bytes] = OrderedDict()
        self.in_flight = 0
        self.log = configure_logging("shop", log_path)
        self.reload(force=True)

    def reload(self, force: bool = False) -> None:
        with self.lock:
            if not self.cfg.refresh() and not force:
                return
            size = self.cfg.int("db_pool_size", 10)
            if size != self.pool.size or force:
                self.pool = Pool(size)
            self.log = configure_logging("shop", self.log_path, self.cfg.int("log_max_bytes", 0),
                                         self.cfg.int("log_backups", 3))
            self.log.info("configuration loaded from %s: db_pool_size=%d threads=%d image_cache_max_items=%d "
                          "max_open_files=%d", ", ".join(p.name for p in self.cfg.paths), size,
                          self.cfg.int("threads", 16), self.cfg.int("image_cache_max_items", 0),
                          self.cfg.int("max_open_files", 0))
            limit = self.cfg.int("image_cache_max_items", 0)
            while limit and len(self.cache) > limit:
                self.cache.popitem(last=False)
            apply_fd_limit(self.cfg.int("max_open_files", 0))
            self.slots = threading.BoundedSemaphore(self.cfg.int("threads", 16))

    def checkout(self) -> tuple[int, str]:
        pool = self.pool
        timeout = self.cfg.float("pool_timeout_s", 0.5)
        if not pool.acquire(timeout):
            self.log.error(
                "sqlalchemy.exc.TimeoutError: QueuePool limit of size %d overflow 0 reached, "
                "connection timed out, timeout %.2f (Background on this error at: https://sqlalche.me/e/20/3o7r)",
                pool.size, timeout)
            return 503, "database connection pool exhausted\n"
        try:
            time.sleep(self.cfg.float("query_time_s", 0.2))
        finally:
            pool.release()
        return 200, "order placed\n"

    def health(self) -> tuple[int, str]:
        # A readiness check: it fails while requests are already queueing for a connection.
        pool = self.pool
        if pool.waiting or not pool.acquire(0.1):
            return 503, "unhealthy: no database connection available\n"
        pool.release()
        return 200, "ok\n"

    def image(self, image_id: str) -> tuple[int, str]:
        with self.lock:
            if image_id in self.cache:
                self.cache.move_to_end(image_id)
                return 200, "cached\n"
        try:
            blob = bytes(self.cfg.int("image_size_kb", 512) * 1024)
            blob = blob.replace(b"\x00", b"\x01")  # touch every page
        except MemoryError:
            self.log.critical(
                "Worker exiting: cannot cache image id=%s\nTraceback (most recent call last):\n"
                "  File \"shop.py\", line 120, in image\n    blob = bytes(size)\nMemoryError", image_id)
            logging_flush(self.log)
            os._exit(3)
        with self.lock:
            self.cache[image_id] = blob
            limit = self.cfg.int("image_cache_max_items", 0)
            while limit and len(self.cache) > limit:
                self.cache.popitem(last=False)
        return 200, "rendered\n"

    def metrics(self) -> tuple[int, str]:
        rss_kb = 0
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss_kb = int(line.split()[1])
        except OSError:
            pass
        lines = [
            "# TYPE shop_db_pool_size gauge", f"shop_db_pool_size {self.pool.size}",
            "# TYPE shop_db_pool_in_use gauge", f"shop_db_pool_in_use {self.pool.in_use}",
            "# TYPE shop_db_pool_waiting gauge", f"shop_db_pool_waiting {self.pool.waiting}",
            "# TYPE shop_requests_in_flight gauge", f"shop_requests_in_flight {self.in_flight}",
            "# TYPE shop_open_fds gauge", f"shop_open_fds {_open_fds()}",
            "# TYPE shop_image_cache_items gauge", f"shop_image_cache_items {len(self.cache)}",
            "# TYPE shop_rss_mb gauge", f"shop_rss_mb {rss_kb / 1024:.1f}",
        ]
        return 200, "\n".join(lines) + "\n"


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def apply_fd_limit(limit: int) -> None:
    """max_open_files is the soft RLIMIT_NOFILE, like systemd's LimitNOFILE=."""
    if limit > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, shop: "Shop"):
        self.shop = shop
        super().__init__(address, handler)

    def get_request(self):
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno == errno.EMFILE:
                self.shop.log.error("accept() failed: [Errno 24] Too many open files (RLIMIT_NOFILE %d)",
                                    resource.getrlimit(resource.RLIMIT_NOFILE)[0])
                time.sleep(0.05)  # the listen backlog keeps the client waiting; do not spin
            raise


def logging_flush(logger) -> None:
    for h in logger.handlers:
        h.flush()


def make_handler(shop: Shop):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: without this each reply waits ~40 ms

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            shop.reload()
            started = time.monotonic()
            with shop.slots:  # `threads`: at most this many requests are served at once
                with shop.lock:
                    shop.in_flight += 1
                try:
                    status, body = self.route()
                finally:
                    with shop.lock:
                        shop.in_flight -= 1
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError) as exc:
                shop.log.warning("client %s closed connection early: %s", self.client_address[0], exc)
            if self.path != "/metrics":
                shop.log.info('%s - "GET %s HTTP/1.1" %d %d %.3fs', self.client_address[0], self.path, status,
                              len(data), time.monotonic() - started)

        def route(self) -> tuple[int, str]:
            if self.path == "/health":
                return shop.health()
            if self.path == "/checkout":
                return shop.checkout()
            if self.path.startswith("/image/"):
                return shop.image(self.path.rsplit("/", 1)[-1])
            if self.path == "/metrics":
                return shop.metrics()
            return 404, "not found\n"

        def log_message(self, format: str, *args: object) -> None:
            return None  # access lines go to the shop log above

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, action="append", help="repeatable; later files win")
    parser.add_argument("--log", required=True)
    parser.add_argument("--pid-file")
    args = parser.parse_args(argv)
    if args.pid_file:
        with open(args.pid_file, "w") as fh:
            fh.write(str(os.getpid()))
    threading.stack_size(512 * 1024)
    shop = Shop(args.config, args.log)
    limit_mb = shop.cfg.int("memory_limit_mb", 0)
    if limit_mb:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 1024 * 1024, limit_mb * 1024 * 1024))
    port = shop.cfg.int("port", 18080)
    server = ShopServer(("127.0.0.1", port), make_handler(shop), shop)
    shop.log.info("shop listening on 127.0.0.1:%d (pid %d)", port, os.getpid())
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    except Exception:
        shop.log.critical("shop stopped: %s", traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
