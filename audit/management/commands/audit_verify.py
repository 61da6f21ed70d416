from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from audit.verify import verify_all


class Command(BaseCommand):
    help = (
        "Walk every audit chain and signed checkpoint. Prints `OK <n> events`, or the first "
        "event that was altered, removed, inserted or reordered and exits non-zero."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Verify only this organisation's chain")

    def handle(self, org: str | None, **options) -> None:
        if org:
            found = Organization.objects.filter(slug=org).values_list("pk", flat=True).first()
            if found is None:
                raise CommandError(f"No organisation {org!r}.")
            org_ids: list[int | None] = [found]
        else:
            org_ids = [None, *Organization.objects.order_by("pk").values_list("pk", flat=True)]
        results = verify_all(org_ids)
        failures = [r for r in results if r.problem]
        if failures:
            for r in failures:
                label = self._label(r.chain)
                self.stderr.write(f"FAIL {label}: {r.problem}")
            raise CommandError(f"{len(failures)} audit chain(s) failed verification.")
        self.stdout.write(f"OK {sum(r.events for r in results)} events")

    @staticmethod
    def _label(chain: str) -> str:
        if chain.startswith("org:"):
            slug = Organization.objects.filter(pk=int(chain[4:])).values_list("slug", flat=True)
            return f"org {slug.first() or chain}"
        return "events outside any organisation"
