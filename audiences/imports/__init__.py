"""Contact import from CSV (docs/IMPORT.md): mapping, validation pass, batched run."""

from .services import (
    ImportInvalid,
    ImportStateError,
    import_change_mapping,
    import_check,
    import_create,
    import_delete,
    import_error_rows,
    import_run,
    import_take_stalled,
    import_transition,
    import_validate,
    imports_stalled,
)

__all__ = [
    "ImportInvalid",
    "ImportStateError",
    "import_change_mapping",
    "import_check",
    "import_create",
    "import_delete",
    "import_error_rows",
    "import_run",
    "import_take_stalled",
    "import_transition",
    "import_validate",
    "imports_stalled",
]
