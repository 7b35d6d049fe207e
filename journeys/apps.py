from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from messaging import signals

        from . import receivers

        signals.message_received.connect(
            receivers.on_message_received, dispatch_uid="journeys.replied"
        )
        signals.message_status_changed.connect(
            receivers.on_message_status_changed, dispatch_uid="journeys.status"
        )
