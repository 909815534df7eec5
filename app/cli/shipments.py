"""`flask --app app shipments retry RENTAL_ID`: put a failed shipment back."""

from __future__ import annotations

import click

from app.cli.group import CommandGroup
from app.ops.audit_log import audited
from app.services.shipments import RetryRefused, retry_rental
from cronwork.audit import Action, Source

shipments_cli = CommandGroup("shipments", help="Scheduled shipments: put a failed rental back.")


@shipments_cli.command("retry")
@click.argument("rental_id", type=int)
def retry_command(rental_id: int) -> None:
    """Put failed rental RENTAL_ID back to pending: the next run ships it (one already booked
    with the carrier is only re-notified to the marketplace)."""
    try:
        with audited(Source.CLI, Action.SHIPMENT_RETRY, target=f"rental:{rental_id}"):
            rental = retry_rental(rental_id)
    except RetryRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rental {rental.id} is pending again (last error: {rental.last_error or '-'})")
