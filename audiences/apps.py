from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging import signals

        from . import receivers

        signals.contacts_changed.connect(
            receivers.on_contacts_changed, dispatch_uid="audiences.contacts_changed"
        )
        signals.message_status_changed.connect(
            receivers.on_message_status_changed, dispatch_uid="audiences.message_status_changed"
        )
        for name in ("message_received", "consent_changed"):
            getattr(signals, name).connect(
                receivers.on_contact_activity, dispatch_uid=f"audiences.{name}"
            )
