from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The admin registers every app's ModelAdmins in its own ready() (it is listed first
        # in INSTALLED_APPS); every one of them is audited from here, so a new admin cannot
        # forget to be.
        from .admin_mixins import audit_every_model_admin

        audit_every_model_admin()
