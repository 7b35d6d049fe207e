from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from channels_app.events import inbound_received, tracking_received

        from . import checks, receivers, schema  # noqa: F401  (checks and schema register)

        tracking_received.connect(receivers.on_tracking_received, dispatch_uid="messaging.tracking")
        inbound_received.connect(receivers.on_inbound_received, dispatch_uid="messaging.inbound")
