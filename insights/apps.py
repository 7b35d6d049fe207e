from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from campaigns.models import Broadcast
        from journeys import event_hooks
        from journeys.models import Journey

        from .attribution import attribute_event
        from .selectors import conversion_event_names, forget_conversion_owners

        # journeys applies events; it calls attribution through its registry (no upward import).
        event_hooks.register(attribute_event, names=conversion_event_names)
        for model in (Journey, Broadcast):
            for signal in (post_save, post_delete):
                signal.connect(
                    forget_conversion_owners,
                    sender=model,
                    dispatch_uid=f"insights.conversion_owners.{model.__name__}.{id(signal)}",
                )
