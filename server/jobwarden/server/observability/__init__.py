"""What the engine tells its operators: Prometheus metrics (``--metrics-port``) and log lines, as
text or JSON (``--log-format json``), job lines carrying ``job_id`` and ``attempt``."""

from ._http import MetricsServer
from ._logging import LOG_FORMATS, JsonFormatter, configure_logging
from ._metrics import EngineMetrics
from ._tap import observe

__all__ = ["LOG_FORMATS", "EngineMetrics", "JsonFormatter", "MetricsServer", "configure_logging", "observe"]
