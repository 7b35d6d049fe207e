from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from journeys.staff_groups import ensure_staff_groups

        from . import broadcast_experiments

        # The groups hold insights.view_reports, which exists only once this app's
        # permissions are created (after journeys' post_migrate): set the groups again.
        post_migrate.connect(ensure_staff_groups, sender=self, dispatch_uid="insights.groups")
        broadcast_experiments.register()
