from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from messaging import signals

        from . import segment_conditions

        segment_conditions.register()

        from . import template_usage

        template_usage.register()

        from . import segment_triggers

        segment_triggers.register()

        from .staff_groups import ensure_staff_groups

        post_migrate.connect(ensure_staff_groups, sender=self, dispatch_uid="journeys.groups")

        from django.db.models.signals import post_delete, post_save

        from . import receivers
        from .models import Journey, Step
        from .selectors import forget_journey_events_in_use

        for model in (Journey, Step):
            for signal in (post_save, post_delete):
                signal.connect(
                    forget_journey_events_in_use,
                    sender=model,
                    dispatch_uid=f"journeys.events_in_use.{model.__name__}.{id(signal)}",
                )

        signals.message_received.connect(
            receivers.on_message_received, dispatch_uid="journeys.replied"
        )
        signals.message_status_changed.connect(
            receivers.on_message_status_changed, dispatch_uid="journeys.status"
        )
        signals.conversation_changed.connect(
            receivers.on_conversation_changed, dispatch_uid="journeys.conversation"
        )
