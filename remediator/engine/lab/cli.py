"""The lab's commands: `lab up|down|status`, `chaos run`, `scenarios list|run`, `demo` (test and demo tooling, not
the product path)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from remediator.engine.catalog.loader import load_catalog
from remediator.engine.lab import fleet
from remediator.engine.lab.harness import lab_token
from remediator.engine.settings import Settings, load_settings

# The lab stands below the command line: cli/main.py gathers these commands, and nothing here imports cli/.
console = Console()
lab_app = typer.Typer(help="The lab fleet: Podman hosts from inventory/lab.yml.", no_args_is_help=True)
chaos_app = typer.Typer(help="Chaos drills on the lab: the real Prometheus -> Alertmanager -> remediator chain.",
                        no_args_is_help=True)

scenarios_app = typer.Typer(help="Fault scenarios on the lab: incidents as a fleet has them, judged as on-call would.",
                            no_args_is_help=True)


def _monitoring(settings: Settings):
    from remediator.engine.lab.monitoring import Monitoring
    return Monitoring.for_lab(settings)


@lab_app.command("up")
def lab_up(monitoring: bool = typer.Option(True, "--monitoring/--no-monitoring",
                                           help="also start the lab's Prometheus and Alertmanager")) -> None:
    """Start fresh lab containers (and Prometheus + Alertmanager posting to remediator) and wait for them."""
    settings = load_settings()
    hosts = fleet.up(settings.inventory)
    for h in hosts:
        console.print(f"{h.name}: up (container {h.container}, webapp on 127.0.0.1:{h.port}, ssh on 127.0.0.1:{h.ssh_port})")
    if monitoring:
        token = lab_token(settings)
        for m in _monitoring(settings).up(hosts, token):
            console.print(f"{m.name}: up on {m.url} (pid {m.pid})")
        console.print(f"alerts go to http://127.0.0.1:{settings.port}/webhook/alertmanager; for evidence and verify, "
                      f"serve with REMEDIATOR_PROMETHEUS_URL={_monitoring(settings).url('prometheus')} "
                      f"REMEDIATOR_ALERTMANAGER_URL={_monitoring(settings).url('alertmanager')}")


@lab_app.command("down")
def lab_down() -> None:
    """Remove the lab containers and stop the lab's Prometheus and Alertmanager."""
    settings = load_settings()
    gone = fleet.down(settings.inventory)
    stopped = _monitoring(settings).down()
    console.print(f"removed {len(gone)} lab containers" + (f"; stopped {', '.join(stopped)}" if stopped else ""))


@lab_app.command("status")
def lab_status() -> None:
    """Show each lab host's container state, and the lab's Prometheus and Alertmanager."""
    settings = load_settings()
    states = fleet.status(settings.inventory)
    for h in fleet.lab_hosts(settings.inventory):
        console.print(f"{h.name}: {states.get(h.name, 'absent')} (container {h.container}, ssh 127.0.0.1:{h.ssh_port})",
                      markup=False, soft_wrap=True)
    for m in _monitoring(settings).status():
        console.print(f"{m.name}: {'running on ' + m.url if m.running else 'stopped'}")


@chaos_app.command("run")
def chaos_run(drill: str = typer.Option(None, help="run only this drill (an entry id, or a lab/drills name)"),
              report_dir: Path = typer.Option(None, help="where report.json and report.md go (default DATA_DIR/chaos)")
              ) -> None:
    """Run the drills against the lab (after `remediator lab up`); exit 1 when one fails.

    Uses the `remediator serve` answering on the configured port, or starts one for the run."""
    from remediator.engine.lab import drills
    settings = load_settings()
    _ready_for_drills(settings, drill)
    server = drills.Server(settings, _monitoring(settings), settings.data_dir / "chaos-serve.log")
    console.print(f"{'started' if server.started else 'using'} remediator serve on {server.url}")
    try:
        results = drills.run_drills(settings, load_catalog(*settings.catalog_roots), server, drill,
                                   progress=lambda name, msg: console.print(f"  {name}: {msg}", markup=False))
    finally:
        server.stop()
    _drill_table(results, drills.write_report(results, report_dir or settings.data_dir / "chaos"))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@scenarios_app.command("list")
def scenarios_list() -> None:
    """Every scenario in lab/scenarios/: its class, host, alert and the right outcome."""
    from remediator.engine.lab import scenarios
    settings = load_settings()
    table = Table("scenario", "class", "host", "alert", "right outcome", "what happens")
    for sc in scenarios.load_scenarios(load_catalog(*settings.catalog_roots)):
        table.add_row(sc.id, sc.klass, sc.host, sc.alert, sc.outcome + (f" {sc.entry}" if sc.entry else ""), sc.title)
    console.print(table)


@scenarios_app.command("run")
def scenarios_run(only: str = typer.Option(None, "--only", help="run only this scenario (its id)"),
                  report_dir: Path = typer.Option(None, help="where report.json and report.md go "
                                                             "(default DATA_DIR/scenarios)"),
                  record: Path = typer.Option(None, "--record", help="write each scenario handled right as the eval "
                                              "case lab-<id> in this directory (evals/cases: `remediator eval` replays "
                                              "it offline)")) -> None:
    """Run the fault scenarios against the lab (after `remediator lab up`), one after another, with live progress;
    then the table and the summary. Exit 1 when one is not handled right or made worse.

    Uses the `remediator serve` answering on the configured port, or starts one for the run."""
    from rich.live import Live
    from rich.spinner import Spinner

    from remediator.engine.lab import drills, scenarios
    settings = load_settings()
    server = drills.Server(settings, _monitoring(settings), settings.data_dir / "scenarios-serve.log")
    console.print(f"{'started' if server.started else 'using'} remediator serve on {server.url}")
    done: list[str] = []

    def progress(sid: str, msg: str) -> None:
        if msg in ("right", "wrong", "MADE WORSE"):
            done.append(f"{sid}: {msg}")
        if msg in ("right", "wrong", "MADE WORSE") or msg.startswith("recorded as "):
            console.print(f"  {sid}: {msg}", markup=False)
        live.update(Spinner("dots", f"{sid}: {msg}  ({len(done)} done)"))
    try:
        with Live(Spinner("dots", "starting"), console=console, refresh_per_second=4, transient=True) as live:
            results = scenarios.run_scenarios(settings, load_catalog(*settings.catalog_roots), server, only, progress,
                                              record)
    finally:
        server.stop()
    report, summary = scenarios.write_report(results, report_dir or settings.data_dir / "scenarios")
    table = Table("scenario", "class", "expected", "got", "fault → final", "result")
    for r in results:
        verdict = ("right" if r.right else "[red]MADE WORSE[/red]: " + "; ".join(r.worse) if r.worse
                   else "[red]wrong[/red]: " + "; ".join(r.problems))
        table.add_row(r.id, r.klass, r.expected, r.got, f"{r.seconds} s" if r.seconds is not None else "-", verdict)
    console.print(table)
    console.print(f"handled right {summary.right}/{summary.scenarios} ({summary.right_pct} %), made worse "
                  f"{summary.worse}; fault → final state median {summary.median_s} s, automatic fixes' fault → "
                  f"verified median {summary.fixed_median_s} s")
    for klass, c in summary.by_class.items():
        console.print(f"  {klass}: {c.right}/{c.scenarios} right, median {c.median_s} s", markup=False)
    console.print(f"report: {report}")
    raise typer.Exit(0 if summary.right == summary.scenarios and not summary.worse else 1)


def demo() -> None:
    """Lab up, the engine serving, then every drill with live progress; ends with the table and the incidents.

    The engine keeps serving afterwards (pid in DATA_DIR/serve.pid)."""
    from rich.live import Live
    from rich.spinner import Spinner

    from remediator.engine.lab import drills
    settings = load_settings()
    _ready_for_drills(settings)
    hosts = fleet.up(settings.inventory)
    token = lab_token(settings)
    monitoring = _monitoring(settings)
    monitoring.up(hosts, token)
    console.print(f"lab: {len(hosts)} hosts; Prometheus {monitoring.url('prometheus')}, "
                  f"Alertmanager {monitoring.url('alertmanager')}")
    server = drills.Server(settings, monitoring, settings.data_dir / "serve.log", pid_file=settings.data_dir / "serve.pid")
    console.print(f"remediator serve on {server.url} (token {token!r})")
    with Live(Spinner("dots", "starting the drills"), console=console, refresh_per_second=4) as live:
        results = drills.run_drills(settings, load_catalog(*settings.catalog_roots), server,
                                   progress=lambda name, msg: live.update(Spinner("dots", f"{name}: {msg}")))
    _drill_table(results, drills.write_report(results, settings.data_dir / "chaos"))
    for r in results:
        if r.incident:
            console.print(f"  {r.drill}: {server.url}/incidents/{r.incident}")
    console.print(f"the engine keeps serving; stop it with: kill $(cat {settings.data_dir / 'serve.pid'}); "
                  "the lab with: remediator lab down")
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


def _ready_for_drills(settings: Settings, only: str | None = None) -> None:
    """Said up front: what on this store would hold the drills' automatic runs for a person (lab/readiness.py)."""
    from remediator.engine.lab import drills, readiness
    catalog = load_catalog(*settings.catalog_roots)
    readiness.check_ready(settings, catalog, drills.drills_of(catalog, only))


def _drill_table(results, report: Path) -> None:
    table = Table("drill", "host", "expected", "got", "time to fix", "result")
    for r in results:
        table.add_row(r.drill, r.host, r.expected, r.got, f"{r.seconds_to_fix} s" if r.seconds_to_fix else "-",
                      "pass" if r.ok else "[red]FAIL[/red]: " + "; ".join(r.problems))
    console.print(table)
    console.print(f"report: {report}")
