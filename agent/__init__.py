"""The waka agent: joins a controller, builds in sandboxes, runs and supervises dynos, ships logs.

Public surface: `AgentConfig`, `AgentError`, `run_agent` (a trio task).
"""

from waka.agent._agent import AgentConfig, AgentError, run_agent

__all__ = ["AgentConfig", "AgentError", "run_agent"]
