from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from campaigns.models import Broadcast
        from journeys import event_hooks
        from journeys.models import Journey
        from journeys.staff_groups import ensure_staff_groups

        from . import broadcast_experiments
        from .attribution import attribute_event
        from .selectors import conversion_event_names, forget_conversion_owners

        # The groups hold insights.view_reports, which exists only once this app's
        # permissions are created (after journeys' post_migrate): set the groups again.
        post_migrate.connect(ensure_staff_groups, sender=self, dispatch_uid="insights.groups")
        broadcast_experiments.register()
        # journeys applies events; it calls attribution through its registry (no upward import).
        event_hooks.register(attribute_event, names=conversion_event_names)
        for model in (Journey, Broadcast):
            for signal in (post_save, post_delete):
                signal.connect(
                    forget_conversion_owners,
                    sender=model,
                    dispatch_uid=f"insights.conversion_owners.{model.__name__}.{id(signal)}",
                )
