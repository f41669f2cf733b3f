"""A local, stateful stand-in for Microsoft Entra sign-in and the Microsoft Graph contacts API."""

from .config import EmulatorConfig
from .emulator import Emulator
from .errors import GraphError
from .schema import validate_contact_shape, validate_folder_shape
from .server import RunningEmulator, serve_in_thread

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "GraphError",
    "RunningEmulator",
    "serve_in_thread",
    "validate_contact_shape",
    "validate_folder_shape",
]
