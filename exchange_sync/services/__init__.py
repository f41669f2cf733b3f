"""The use cases, one module per family. Admin pages, django-q2 tasks and management commands call
these and nothing deeper."""
