from django.apps import AppConfig


class HarnessConfig(AppConfig):
    """Developer tools that drive bcsync against the Microsoft 365 emulator: the soak and the benchmark.
    The only code that imports both the product and the emulator."""

    name = "harness"
    verbose_name = "Soak and benchmark harness"
