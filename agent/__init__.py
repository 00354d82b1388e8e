"""The waka agent: joins a controller, builds in sandboxes, runs and supervises dynos, ships logs.

Public surface: `Agent` (its `run` is a trio task), `AgentConfig`, `AgentError`, `run_agent`.
"""

from waka.agent._agent import Agent, AgentConfig, AgentError, run_agent

__all__ = ["Agent", "AgentConfig", "AgentError", "run_agent"]
