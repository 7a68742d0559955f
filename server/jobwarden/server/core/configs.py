"""Per-action configuration: what the config file and ``SetActionConfig`` stored, and the defaults of
every other action. Looked up on every job's path, so a lookup is one or two dict reads."""

from __future__ import annotations

import logging

from .errors import InvalidArgument
from .model import ActionConfig
from .store import dumps
from .validation import check_action, check_lock_requests, check_retry_policy, check_template, check_timeouts
from .writer import Writer

__all__ = ["ActionConfigs"]

log = logging.getLogger("jobwarden.engine")


class ActionConfigs:
    """The configuration of each action; storing one goes through the writer."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        #: action -> its stored configuration (config file, API, or read back from the store)
        self.stored: dict[str, ActionConfig] = {}
        self._defaults: dict[str, ActionConfig] = {}

    def get(self, action: str) -> ActionConfig:
        """The action's configuration, or its defaults (made once: this is on every job's path)."""
        config = self.stored.get(action)
        if config is None:
            config = self._defaults.get(action)
            if config is None:
                config = self._defaults[action] = ActionConfig(action=action)
        return config

    def all(self) -> list[ActionConfig]:
        """Every stored configuration, by action name."""
        return [self.stored[a] for a in sorted(self.stored)]

    def load(self, config: ActionConfig) -> None:
        """A configuration read back from the store (already checked when it was stored)."""
        self.stored[config.action] = config

    def load_all(self, configs: list[ActionConfig]) -> None:
        """Every configuration as the store has it now (a standby following its leader's changes)."""
        self.stored = {config.action: config for config in configs}

    def put(self, config: ActionConfig, *, actor: str | None = None) -> ActionConfig | None:
        """Check ``config`` (InvalidArgument, and nothing changes), make it the action's, and write it.
        Returns the configuration it replaced. An ``actor`` is logged as the one who changed it."""
        self.validate(config)
        old = self.stored.get(config.action)
        self.stored[config.action] = config
        self._writer.action_config({"action": config.action, "doc": dumps(config.to_dict())})
        if actor is not None:
            log.info("action %s configured by %s: %s", config.action, actor, config.to_dict())
        return old

    @staticmethod
    def validate(config: ActionConfig) -> None:
        check_action(config.action)
        check_timeouts(config.timeouts, f"actions.{config.action}.timeouts")
        if config.retry_policy is not None:
            check_retry_policy(config.retry_policy, f"actions.{config.action}.retry_policy")
        for name, value in (("max_running", config.max_running), ("max_queued", config.max_queued)):
            if value < 0 or value > 10_000_000:
                raise InvalidArgument(f"actions.{config.action}.{name} must be between 0 and 10000000")
        check_lock_requests(
            [(t.resource, int(t.mode)) for t in config.lock_templates],
            f"actions.{config.action}.lock_templates",
        )
        for template in config.lock_templates:
            check_template(template.resource)
