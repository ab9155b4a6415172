"""`selfheal demo`: the whole loop on a real local system.

It builds a sandbox host, starts its processes, points the real sensors at them, then breaks
the host the way production breaks (traffic, a crawler, a release, time passing, a concurrent
task, long-polling clients) and lets the loop close: detection, triage, the offline analyst's
chain, the gate, the fix (auto mode, roots limited to the sandbox), verification and learning.
Then a redeploy brings one failure back (a recurrence the first fix could not prevent), and
finally every trigger is replayed to show that nothing repeats.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.console import Console

from agent.clock import SystemClock
from agent.config import Config, load_config
from agent.demo import triggers
from agent.demo.ops import deploy
from agent.demo.sandbox import Sandbox, build
from agent.demo.supervisor import Supervisor, python_module
from agent.loop import PassReport, run_pass
from agent.store import Store
from agent.store import issues as issue_store
from agent.store import state as state_store

PASS_INTERVAL_S = 0.25


@dataclass
class Scenario:
    id: str
    title: str
    mode: str
    trigger: Callable[[], None]
    check: Callable[[], bool]


@dataclass
class DemoResult:
    home: Path
    report: dict[str, Any]
    html: Path | None
    scenarios: dict[str, list[str]] = field(default_factory=dict)
    replay_new_issues: list[str] = field(default_factory=list)
    warnings_at_replay: list[str] = field(default_factory=list)
    ok: bool = False


class Checks:
    """The loop's symptom checks: the check of the scenario an issue belongs to, run once per issue."""

    def __init__(self) -> None:
        self.by_issue: dict[str, Callable[[], bool]] = {}
        self._results: dict[str, bool] = {}

    def get(self, key: str, default: Any = None) -> Any:
        check = self.by_issue.get(key)
        if check is None:
            return default

        def run(issue: dict[str, Any]) -> tuple[bool, str]:
            if key not in self._results:
                self._results[key] = bool(check())
            ok = self._results[key]
            return ok, "the scenario's conditions were re-created and the symptom's check " + (
                "passed" if ok else "failed")

        return run

    def forget(self, key: str) -> None:
        self._results.pop(key, None)


class Demo:
    def __init__(self, home: Path, console: Console, *, watch_window_s: float = 1.5, timeout_s: float = 60.0,
                 only: set[str] | None = None):
        self.only = only
        self.home = home
        self.out = console
        self.timeout_s = timeout_s
        self.box: Sandbox = build(home / "sandbox", home, watch_window_s=watch_window_s)
        self.cfg: Config = load_config(home, home / "selfheal.yaml")
        self.cfg.analysis.group_wait_s = 2.5
        self.clock = SystemClock()
        self.checks = Checks()
        self.sup = Supervisor(self.box.path("var/log/journal.log"), self.box.root, self.box.path("run/control"))
        self.store: Store | None = None
        self.cycle_id: str | None = None

    # ------------------------------------------------------------------ processes

    def start_host(self) -> None:
        b = self.box
        deploy(b.root)
        self.sup.add("shop", python_module("agent.demo.services.shop", "--config", str(b.shop_ini),
                                           "--config", str(b.path("etc/shop/runtime.ini")),
                                           "--log", str(b.path("var/log/shop/shop.log")),
                                           "--pid-file", str(b.path("run/shop.pid"))))
        self.sup.add("worker", python_module("agent.demo.services.worker", "--config", str(b.path("etc/worker/worker.ini")),
                                             "--log", str(b.path("var/log/worker.log"))))
        self.sup.add("tls-edge", python_module("agent.demo.services.tls_endpoint", "--config", str(b.path("etc/tls/tls.ini")),
                                               "--log", str(b.path("var/log/tls-edge.log"))))
        self.sup.add("payments", python_module("agent.demo.services.payments", "--port", str(b.ports["payments"])))
        self.sup.start_all()
        self.sup.wait_ready({
            "shop": lambda: triggers._healthy(b.url("shop"), 0.3),
            "payments": lambda: triggers._healthy(b.url("payments"), 0.3),
            "worker": lambda: b.path("run/worker.beat").exists(),
            "tls-edge": lambda: b.path("var/log/tls-edge.log").exists(),
        })

    def scenarios(self) -> list[Scenario]:
        data = yaml.safe_load(resources.files("agent.demo").joinpath("scenarios.yaml").read_text(encoding="utf-8"))
        out = []
        for item in data:
            trig, check = getattr(triggers, item["trigger"]), getattr(triggers, item["check"])
            needs_home = "home" in trig.__code__.co_varnames[: trig.__code__.co_argcount]
            args = (self.box, self.home) if needs_home else (self.box,)
            if self.only and item["id"] not in self.only:
                continue
            out.append(Scenario(item["id"], item["title"], item["mode"],
                                (lambda t=trig, a=args: t(*a)), (lambda c=check, a=args: c(*a))))
        return out

    # ------------------------------------------------------------------ the loop

    def hook(self, stage: str, issue: str | None, detail: dict[str, Any]) -> None:
        from agent.render import chain_tree, gate_table

        o = self.out
        if stage == "triage":
            o.print(f"  [cyan]triage[/]   {issue}: [bold]{detail['verdict']}[/] (rule {detail['rule']})")
        elif stage == "group":
            o.print(f"  [cyan]group[/]    {issue} is a link of {detail['parent']}'s chain (node {detail['node']})")
        elif stage == "gate":
            result = detail["result"]
            mode = getattr(result, "mode", None) or ""
            if result.escalated:
                o.print(f"  [red]escalate[/] {issue}: {result.reason}")
            else:
                o.print(f"  [cyan]analyse[/]  {issue}: offline analyst, mode [magenta]{mode}[/]; "
                        f"gate passed in {result.gate.elapsed_ms:.1f} ms")
                archive = result.gate.checks.archive
                if (archive.model_extra or {}).get("escalated"):
                    o.print(f"  [yellow]archive[/]  {archive.reason}")
                o.print(chain_tree(result.chain, title=f"{issue}: 5-Whys chain"))
            if result.gate is not None and result.escalated:
                o.print(gate_table(result.gate))
        elif stage == "apply":
            o.print(f"  [cyan]fix[/]      {issue}: applied {detail['fix']} ({detail['action']}) with a backup")
        elif stage == "verify":
            mark = "[green]verified[/]" if detail["passed"] else "[red]did not hold[/]"
            o.print(f"  [cyan]verify[/]   {issue}: {mark}")
        elif stage == "learn" and detail["rules"]:
            o.print(f"  [cyan]learn[/]    {issue}: {len(detail['rules'])} early-warning rule(s): {', '.join(detail['rules'])}")
        elif stage == "warning":
            o.print(f"  [yellow]warning[/]  {issue}: {detail['reason']}")
        elif stage == "error":
            o.print(f"  [red]error[/]    {detail.get('step')}: {detail.get('error')}")

    def one_pass(self) -> PassReport:
        assert self.store is not None
        return run_pass(self.store, self.cfg, self.clock, apply=True, symptom_checks=self.checks,
                        cycle_id=self.cycle_id, on_stage=self.hook)

    def settle(self, scenario: Scenario | None, trigger: Callable[[], None] | None, *, min_s: float = 2.0,
               expect_s: float = 8.0) -> list[str]:
        """Run the trigger in the background and pass until it is over and no issue is active; returns issues opened."""
        assert self.store is not None
        before = {i["id"] for i in issue_store.list_issues(self.store)}
        reopened_before = self._recurrence_count()
        worker = threading.Thread(target=trigger, daemon=True) if trigger else None
        if worker:
            worker.start()
        started = time.monotonic()
        opened: list[str] = []
        while True:
            self.one_pass()
            for issue in issue_store.list_issues(self.store):
                if issue["id"] not in before and issue["id"] not in opened:
                    opened.append(issue["id"])
            for issue_id in self._touched(before, reopened_before) + opened:
                if scenario is not None and issue_id not in self.checks.by_issue:
                    self.checks.by_issue[issue_id] = scenario.check
            busy = worker is not None and worker.is_alive()
            active = issue_store.list_issues(self.store, status=issue_store.ACTIVE)
            # Early warnings close on their own once their precursor is quiet; they do not hold a step up.
            waiting = [i for i in active if i["kind"] != "warning" and not self._waits_on_people(i)]
            elapsed = time.monotonic() - started
            # A scenario's failure takes a while to show (a heartbeat gap, a threshold of failed checks):
            # give it `expect_s` to appear before calling the step quiet.
            pending = scenario is not None and not opened and elapsed < expect_s
            if not busy and elapsed >= min_s and not waiting and not pending:
                break
            if elapsed > self.timeout_s:
                self.out.print(f"  [red]timed out[/] with active issues: {', '.join(i['id'] + ' ' + i['status'] for i in active)}")
                break
            time.sleep(PASS_INTERVAL_S)
        return opened

    def _waits_on_people(self, issue: dict[str, Any]) -> bool:
        """Escalated, or grouped under an issue that waits on people: the loop can do nothing more."""
        from agent.store import fixes as fix_store

        if issue["status"] == "needs-human":
            return True
        if issue["status"] != "verifying" or fix_store.fixes(self.store, issue_id=issue["id"]):
            return False
        events = issue_store.events(self.store, issue["id"])
        parent = events[-1]["attrs"].get("parent") if events and events[-1]["event"] == "grouped" else None
        found = issue_store.get_issue(self.store, parent) if parent else None
        return bool(found and found["status"] == "needs-human")

    def quiet_warnings(self, limit_s: float = 15.0) -> None:
        """Pass until the last early warnings have closed (their precursors went quiet)."""
        assert self.store is not None
        deadline = time.monotonic() + limit_s
        while issue_store.list_issues(self.store, status=issue_store.ACTIVE, kind="warning"):
            if time.monotonic() > deadline:
                break
            self.one_pass()
            time.sleep(PASS_INTERVAL_S)

    def _recurrence_count(self) -> int:
        assert self.store is not None
        return len(issue_store.triage_results(self.store, verdict="recurrence"))

    def _touched(self, before: set[str], reopened_before: int) -> list[str]:
        """Issues reopened by a recurrence during this step (they need this scenario's check again)."""
        assert self.store is not None
        rows = issue_store.triage_results(self.store, verdict="recurrence")[reopened_before:]
        ids = []
        for row in rows:
            if row["issue_id"] and row["issue_id"] not in ids:
                ids.append(row["issue_id"])
                self.checks.by_issue.pop(row["issue_id"], None)
                self.checks.forget(row["issue_id"])
        return ids

    # ------------------------------------------------------------------ the story

    def run(self) -> DemoResult:
        o = self.out
        result = DemoResult(home=self.home, report={}, html=None)
        o.rule("[bold]selfheal demo[/]")
        o.print(f"sandbox {self.box.root}; state {self.home}")
        self.start_host()
        o.print("started shop, worker, tls-edge and payments; sensors: logs, health checks, heartbeat, metrics, cron")
        self.store = Store.open(self.cfg.store_path)
        try:
            self.cycle_id = state_store.start_cycle(self.store, "demo", self.clock.now())
            self.settle(None, None, min_s=1.0)

            o.rule("environmental noise: the payments dependency restarts")
            noise_before = len(issue_store.triage_results(self.store, verdict="noise"))
            self.settle(None, lambda: triggers.payments_blip(lambda: self.sup.stop("payments"),
                                                             lambda: self.sup.start("payments")), min_s=1.5)
            noise = len(issue_store.triage_results(self.store, verdict="noise")) - noise_before
            o.print(f"  [green]noise[/]    {noise} failing checks discarded as noise; no issue opened")

            scenarios = self.scenarios()
            for sc in scenarios:
                o.rule(f"{sc.id}: {sc.title}")
                began = time.monotonic()
                result.scenarios[sc.id] = self.settle(sc, sc.trigger)
                o.print(f"  [dim]{sc.id}: loop closed in {time.monotonic() - began:.1f}s[/]")

            replays = list(scenarios)
            cache = next((s for s in scenarios if s.id == "cache"), None)
            if cache is not None:
                o.rule("recurrence: a redeploy renders shop.ini from its template, which still disables eviction")
                recurrence = Scenario("recurrence", "redeploy", cache.mode,
                                      lambda: (triggers.redeploy(self.box), time.sleep(0.5),
                                               triggers.catalogue_crawl(self.box)), cache.check)
                result.scenarios["recurrence"] = self.settle(recurrence, recurrence.trigger)
                replays.append(recurrence)

            o.rule("replay: every trigger again, now that each failure is impossible")
            before = {i["id"] for i in issue_store.list_issues(self.store)}
            for sc in replays:
                o.print(f"  replaying {sc.id}: {sc.title}")
                self.settle(sc, sc.trigger, min_s=1.0, expect_s=0.0)
            after = issue_store.list_issues(self.store)
            result.replay_new_issues = [i["id"] for i in after if i["id"] not in before and i["kind"] == "failure"]
            result.warnings_at_replay = [i["id"] for i in after if i["id"] not in before and i["kind"] == "warning"]
            o.print(f"  new failure issues during the replay: {len(result.replay_new_issues)}; "
                    f"early warnings raised at precursors: {len(result.warnings_at_replay)}")
            self.quiet_warnings()
            state_store.end_cycle(self.store, self.cycle_id, self.clock.now())
            result.report, result.html = self.finish()
        finally:
            self.store.close()
            self.sup.shutdown()
        return result

    def finish(self) -> tuple[dict[str, Any], Path | None]:
        from rich.table import Table

        from agent.report import compute_report
        from agent.report_html import render_html

        assert self.store is not None
        report = compute_report(self.store)
        table = Table("figure", "value", title="selfheal: the seed's figures (from the store)")
        for key in ("issues_tracked", "issues_with_formal_rca", "active_issues", "mttr_hours_latest_cycle",
                    "repeat_issues", "recurrences_escalated", "learning_velocity_per_week", "noise_signals",
                    "genuine_signals"):
            value = report.get(key)
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        self.out.print(table)
        html = self.cfg.reports_dir / "report.html"
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(self.store, report), encoding="utf-8")
        self.out.print(f"HTML report: {html}")
        return report, html


def run_demo(base_home: Path, console: Console, *, keep: bool = False, timeout_s: float = 60.0,
             only: set[str] | None = None) -> DemoResult:
    home = base_home / "demo"
    if home.exists():
        shutil.rmtree(home)
    demo = Demo(home, console, timeout_s=timeout_s, only=only)
    try:
        result = demo.run()
    finally:
        demo.sup.shutdown()
        if not keep:
            shutil.rmtree(demo.box.root, ignore_errors=True)
    r = result.report
    full = only is None
    result.ok = (r.get("issues_with_formal_rca", 0) >= (6 if full else len(result.scenarios))
                 and r.get("active_issues") == 0 and r.get("repeat_issues") == 0
                 and (r.get("recurrences_escalated", 0) >= 1 or "recurrence" not in result.scenarios)
                 and not result.replay_new_issues)
    return result
