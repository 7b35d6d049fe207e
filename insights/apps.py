from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import broadcast_experiments

        broadcast_experiments.register()
