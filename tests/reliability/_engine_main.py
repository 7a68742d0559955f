"""An engine in its own process with any ``EngineConfig`` field set (``jobwarden serve`` exposes only
some): ``python -m tests.reliability._engine_main DB_URL '{"watch_max_pending": 500}'``.

Prints ``listening on HOST:PORT`` once it serves; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from jobwarden.server.api import EngineServer, ServerOptions
from jobwarden.server.core import EngineConfig


async def main(db_url: str, overrides: dict[str, object]) -> None:
    server = EngineServer(
        EngineConfig(db_url=db_url, **overrides),  # type: ignore[arg-type]  # fields from the test, as JSON
        ServerOptions(port=0, watch_keepalive=1.0),
    )
    await server.start()
    print(f"listening on {server.address}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
