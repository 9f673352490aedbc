"""The live OpenAI-compatible gateway and the emulated backend."""

from __future__ import annotations

from flopex.gateway._app import create_app
from flopex.gateway._backends import BackendState, Pool
from flopex.gateway._config import (
    BackendSpec,
    GatewayConfig,
    ModelRoute,
    load_gateway_config,
    resolve_backends,
)
from flopex.gateway._emulator import EmulatorFaults, create_emulator
from flopex.gateway._errors import error_response
from flopex.gateway._labels import Metering, rate_card, reservation_usd
from flopex.gateway._limits import BodyLimit, LimitedHttpToolsProtocol, connection_limit, server_settings
from flopex.gateway._tenancy import Tenancy
from flopex.gateway._thread import BackgroundServer, free_port

__all__ = [
    "BackendSpec",
    "BackendState",
    "BackgroundServer",
    "BodyLimit",
    "free_port",
    "EmulatorFaults",
    "GatewayConfig",
    "LimitedHttpToolsProtocol",
    "ModelRoute",
    "Tenancy",
    "Pool",
    "connection_limit",
    "create_app",
    "create_emulator",
    "error_response",
    "Metering",
    "rate_card",
    "reservation_usd",
    "load_gateway_config",
    "resolve_backends",
    "server_settings",
]
