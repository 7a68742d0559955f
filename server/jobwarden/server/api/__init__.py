"""The gRPC face of the engine: servicers that translate proto to domain and back, nothing more."""

from .server import EngineServer, ServerOptions

__all__ = ["EngineServer", "ServerOptions"]
