"""Adapters: proctor inside the agent frameworks, each imported only where it is used.

``proctor.adapters.langchain.ProctorMiddleware`` governs a LangChain v1 agent
(``create_agent``, LangGraph); ``proctor.adapters.openai_agents.ProctorAgents``
an OpenAI Agents SDK agent. Both run each tool call (and each model call, for
LangChain) through the ``@runlog`` call flow, so rules, approvals, budgets and
the run log work as they do for decorated functions. ``_shared`` holds what
both need: the policy settings, the guards per tool, the approvals found again
by a tool call's id.
"""

from __future__ import annotations
