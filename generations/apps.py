from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate

POLLER_SCHEDULE = "Poll Luma"


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from generations.tasks import start_polling_after_spawn

        post_migrate.connect(ensure_poller_schedule, sender=self)
        post_spawn.connect(start_polling_after_spawn, dispatch_uid="lumaweb-start-polling")


def ensure_poller_schedule(**kwargs) -> None:
    """The safety net that (re)starts the poller every minute; idempotent across migrates."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=POLLER_SCHEDULE,
        defaults={
            "func": "generations.tasks.poll_luma",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
