"""Claims across replicas: pause and resume them (every replica reads a pause at its next claim), and see who holds
what (docs/scaling.md). A pause only holds work back, so any approver may pause; a resume lets automation act
again, so it takes an admin; both are audited in the token's name, not in a login name anyone can set."""
from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import select

from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.cli import common
from remediator.engine.cli.common import console
from remediator.engine.errors import PayloadError
from remediator.engine.model.roles import Role
from remediator.engine.store import leases

__all__ = ["pause", "resume", "claims"]

SCOPE = typer.Option(leases.ALL, "--scope", metavar="GROUP|HOST",
                     help="an inventory group or host; default: everything")


def _who(token: str, role: Role, doing: str) -> str:
    who = common.identities(common.settings()).authenticate(token)
    who.require(role, doing)
    return who.name


def _known(scope: str) -> str:
    if scope == leases.ALL:
        return scope
    inventory = load_inventory(common.settings().inventory)
    groups = {g for gs in inventory.hosts.values() for g in gs}
    if scope not in groups and scope not in inventory.hosts:
        raise PayloadError(f"{scope!r} is no group or host of the inventory; groups: {', '.join(sorted(groups))}")
    return scope


def pause(scope: str = SCOPE, reason: str = typer.Option("", help="said in `incidents show` and the audit"),
          token: str = common.TOKEN) -> None:
    """Stop new claims (in a scope; an approver's token): runs in flight finish, nothing new starts until
    `remediator resume`."""
    leases.pause(common.store(), _known(scope), _who(token, Role.APPROVER, "pause claims"), reason)
    console.print(f"paused: {'everything' if scope == leases.ALL else scope}; `remediator resume"
                  f"{'' if scope == leases.ALL else ' --scope ' + scope}` lets claims go on", markup=False)


def resume(scope: str = SCOPE, token: str = common.TOKEN) -> None:
    """Let claims (in a scope) go on (an admin's token)."""
    if not leases.resume(common.store(), scope, _who(token, Role.ADMIN, "resume claims")):
        raise PayloadError(f"{scope!r} is not paused (`remediator claims` shows what is)")
    console.print(f"resumed: {'everything' if scope == leases.ALL else scope}", markup=False)


def claims() -> None:
    """The pauses, and which replica holds which host now."""
    store = common.store()
    with store.read() as session:
        paused = leases.pauses(session)
        held = session.execute(select(leases.Lease).order_by(leases.Lease.key)).scalars().all()
    for p in paused:
        console.print(f"paused {p.scope} by {p.by} at {p.at:%Y-%m-%d %H:%M:%S}: {p.reason or '-'}", markup=False)
    if not paused:
        console.print("nothing is paused")
    table = Table("host", "incident", "replica", "claimed", "expires")
    for lease in held:
        table.add_row(lease.key, lease.incident_id, lease.owner, f"{lease.claimed_at:%H:%M:%S}", f"{lease.expires_at:%H:%M:%S}")
    console.print(table)
