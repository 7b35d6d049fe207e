from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class OutboundConfig(AppConfig):
    name = "outbound"
    verbose_name = "Outbound webhooks"

    def ready(self) -> None:
        from journeys import signals as journey_signals
        from messaging import signals as messaging_signals

        from . import checks, receivers  # noqa: F401  (checks register)

        hooks = [
            (messaging_signals.message_status_changed, receivers.on_message_status_changed),
            (messaging_signals.message_received, receivers.on_message_received),
            (messaging_signals.consent_changed, receivers.on_consent_changed),
            (journey_signals.survey_answered, receivers.on_survey_answered),
            (journey_signals.enrollment_ended, receivers.on_enrollment_ended),
        ]
        for signal, receiver in hooks:
            signal.connect(receiver, dispatch_uid=f"outbound.{receiver.__name__}")

        # A subscription saved or deleted here is seen by this process's next event at once
        # (other processes: within OUTBOUND_WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS).
        subscription = self.get_model("WebhookSubscription")
        for signal, uid in ((post_save, "saved"), (post_delete, "deleted")):
            signal.connect(
                receivers.on_subscription_changed,
                sender=subscription,
                dispatch_uid=f"outbound.subscription_{uid}",
            )
