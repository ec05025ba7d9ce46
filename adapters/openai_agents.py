"""OpenAI Agents SDK adapter: :class:`CompactingSession`, a ``Session`` that wraps any
underlying session (``SQLiteSession``, ``RedisSession``, ``SQLAlchemySession``...) and hands
the ``Runner`` a compacted history.

    session = CompactingSession(SQLiteSession("user-42", "chats.db"), compactor, agent=agent)
    result = await Runner.run(agent, "Where is my order?", session=session,
                              run_config=RunConfig(
                                  call_model_input_filter=session.call_model_input_filter))

The Agents SDK stores OpenAI Responses API input items (``message``, ``function_call``,
``function_call_output``, ``reasoning``...), whatever the model class; the compactor reasons
about them in its Responses format (``Format.RESPONSES``), where a turn's reasoning, message
and ``function_call`` items and the ``function_call_output`` items answering them are one
unit that is never split. Every item the ``Runner`` adds goes to the underlying session as it
is (the raw history stays there, untouched) and, the first time the compactor sees it, to
the compactor's session store (``store.restore(session_id)`` gives the items back); every
compaction is a ledger record.

Where compaction happens, and why:

* ``get_items`` -- the ``Runner`` reads the session once, at the start of each run: the
  history it returns is the compacted view (our summary, a ``developer`` message, then the
  kept items as they were stored). Compacting on read, not after ``add_items``, because the
  ``Runner`` adds items after every model turn while it reads only once per run: compacting
  after each write runs the compactor once per turn for a history nobody reads until the
  next run (measured in ``docs/adapters/openai-agents.md``).
* ``call_model_input_filter`` -- within one run the ``Runner`` never reads the session
  again: it sends the history it read plus everything the run produced. Pass this method as
  ``RunConfig(call_model_input_filter=...)`` and every model call of the run is compacted
  too, so a long tool loop in a single run stays inside the window.

``Runner.run(..., hooks=session.hooks)`` calibrates our token estimates to the provider's
counts from each response's ``usage.input_tokens``.

See ``docs/adapters/openai-agents.md``. Needs the ``openai-agents`` package (``pip install
'agent-context-compactor[openai-agents]'``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from compactor._errors import ConfigError
from compactor._format import Format, strip_metadata
from compactor._optional import require
from compactor._units import group_units

from ._calibration import Calibrator, call_window

require("agents", extra="openai-agents", what="compactor.adapters.openai_agents")
from agents.lifecycle import RunHooks  # noqa: E402
from agents.models import get_default_model  # noqa: E402
from agents.run_config import CallModelData, ModelInputData  # noqa: E402

FMT = Format.RESPONSES


def _tool_schemas(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Agents SDK tools as the Responses API tool schemas the model receives, for counting:
    a ``FunctionTool`` as ``{"type": "function", "name", "description", "parameters"}``;
    a schema dict as it is; any other tool (hosted tools) as ``{"type": its name}``."""
    out: list[dict[str, Any]] = []
    for t in tools:
        if isinstance(t, Mapping):
            out.append(dict(t))
        elif hasattr(t, "params_json_schema"):
            out.append({"type": "function", "name": t.name,
                        "description": getattr(t, "description", "") or "",
                        "parameters": t.params_json_schema})
        else:
            out.append({"type": str(getattr(t, "name", type(t).__name__))})
    return out


def _agent_model(agent: Any) -> str | None:
    """The name of the model ``agent`` calls: its ``model`` when a str, a ``Model``
    object's ``model``, the SDK's default model when it has none (None when unknown)."""
    model = getattr(agent, "model", None)
    if model is None and agent is not None:
        return get_default_model()
    if isinstance(model, str):
        return model
    name = getattr(model, "model", None)
    return name if isinstance(name, str) else None


def _stored_model(items: Sequence[Any]) -> str | None:
    """The model that produced the last model item of ``items``, from the
    ``provider_data`` the ``Runner`` stores with it (None when none says)."""
    for it in reversed(items):
        data = it.get("provider_data") if isinstance(it, Mapping) else None
        if isinstance(data, Mapping) and isinstance(data.get("model"), str):
            return data["model"]
    return None


class _CalibratingHooks(RunHooks[Any]):
    """``RunHooks`` that hand each model response's ``usage.input_tokens`` to
    :meth:`CompactingSession.observe_usage`."""

    def __init__(self, session: "CompactingSession") -> None:
        self._session = session

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        n = getattr(getattr(response, "usage", None), "input_tokens", 0)
        model = self._session.model or _agent_model(agent) \
            or self._session._seen_model
        if model and isinstance(n, int):
            self._session.observe_usage(model, n)


class CompactingSession:
    """An Agents SDK ``Session`` that keeps the history the ``Runner`` sends inside the
    model's context window; the raw items stay in the underlying session.

    * ``add_items`` appends to the underlying session, unchanged.
    * ``get_items()`` reads every item of the underlying session and returns the
      compactor's view of them: as stored while they fit under the compactor's high
      watermark; else our summary (a ``developer`` message item) followed by the most recent
      items, each the stored item itself, cut only between units (a turn's ``reasoning``,
      ``message`` and ``function_call`` items with the ``function_call_output`` items that
      answer them). ``get_items(limit=N)``: the last items of that view, at most ``N``,
      starting on a unit boundary (so possibly fewer than ``N``).
    * ``pop_item`` and ``clear_session`` act on the underlying session; the compactor's
      archive keeps what was removed (a later history that differs starts a new branch of
      the archive: ``store.restore`` then returns the current items).
    * :meth:`call_model_input_filter` (for ``RunConfig(call_model_input_filter=...)``)
      compacts each model call of a run: the run's input is the view ``get_items``
      returned plus the run's new items; the compactor continues the session from our
      summary and returns what to send.

    The compactor session is ``session_id`` (default: the underlying session's id); with a
    store, every item is archived before it can leave the context, and each compaction is
    one ledger record with its ``archive_ref``.

    Args:
        session: the underlying session (anything with the SDK's ``Session`` methods).
        compactor: the :class:`~compactor.MessageCompactor` (default: offline summaries,
            no store).
        session_id: the compactor session (default: ``session.session_id``).
        agent: the agent this session serves, read for the defaults of ``model`` (its
            model's name; the SDK's default model when it names none), ``instructions``
            (when a str) and ``tools`` (its tools).
        model: the model name, for the compactor's model/tier window and calibration
            (default: the agent's, else the one the filter last saw, else the
            ``provider_data`` model of the last stored model item).
        window: the provider's context window, in provider tokens (default: the
            compactor's ``window``, else its model/tier window).
        max_tokens: output tokens reserved out of the window (default: the compactor's
            ``reserve_output_tokens``).
        instructions: the agent's system prompt (sent as ``instructions``, not an item),
            counted; the filter uses each call's own.
        tools: the agent's tools (SDK ``Tool`` objects or Responses tool schema dicts),
            counted; the filter uses the calling agent's.
        calibrate: correct our estimates to the provider's counts, observed by
            :attr:`hooks` (or :meth:`observe_usage`).
        calibrator: share one :class:`~compactor.adapters.Calibrator` between sessions.

    Attributes:
        underlying: the wrapped session.
        session_id: the underlying session's id (the ``Runner`` matches sessions by it).
        compactor_session_id: the compactor session (archive, state, ledger records).
        last_result: the :class:`~compactor.CompactionResult` of the last compaction call.
        hooks: ``RunHooks`` for ``Runner.run(..., hooks=session.hooks)``: each model
            response's ``usage.input_tokens`` calibrates the window.

    Raises:
        MissingExtraError: ``openai-agents`` is not installed (one line naming the extra;
            raised when this module is imported).
        ConfigError: ``window`` not positive, or ``session`` lacks a session method.
    """

    def __init__(self, session: Any, compactor: Any = None, *, session_id: str | None = None,
                 agent: Any = None, model: str | None = None, window: int | None = None,
                 max_tokens: int | None = None, instructions: str | None = None,
                 tools: Sequence[Any] | None = None, calibrate: bool = True,
                 calibrator: Calibrator | None = None) -> None:
        missing = [m for m in ("get_items", "add_items", "pop_item", "clear_session")
                   if not callable(getattr(session, m, None))]
        if missing:
            raise ConfigError(f"session is a {type(session).__name__}, which has no "
                              f"{', '.join(missing)}; fix: wrap an Agents SDK Session "
                              "(e.g. SQLiteSession)", field="session")
        if window is not None and window <= 0:
            raise ConfigError(f"window must be > 0 tokens, got {window}", field="window")
        from compactor._compactor import MessageCompactor

        self.underlying = session
        self.session_id: str = session.session_id
        self.compactor = compactor or MessageCompactor()
        self.compactor_session_id = session_id or str(session.session_id)
        if agent is not None:
            model = model or _agent_model(agent)
            agent_instructions = getattr(agent, "instructions", None)
            if instructions is None and isinstance(agent_instructions, str):
                instructions = agent_instructions
            if tools is None and getattr(agent, "tools", None):
                tools = agent.tools
        self.model = model
        self.window = window
        self.max_tokens = max_tokens
        self.instructions = instructions
        self.tools = _tool_schemas(tools) if tools else None
        self.calibrate = calibrate
        self.calibrator = calibrator or Calibrator()
        self.last_result: Any = None
        self._seen_model: str | None = None
        self._estimate: int | None = None
        self.hooks: RunHooks[Any] = _CalibratingHooks(self)

    # ------------------------------------------------------------------ Session protocol
    @property
    def session_settings(self) -> Any:
        """The underlying session's ``SessionSettings`` (its default ``limit``)."""
        return getattr(self.underlying, "session_settings", None)

    @property
    def _ignore_ids_for_matching(self) -> bool:
        # the Runner reads this from the session it is given; keep the underlying one's
        return bool(getattr(self.underlying, "_ignore_ids_for_matching", False))

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The history for the next run: the compacted view of every stored item.

        Args:
            limit: at most this many of the view's latest items, starting on a unit
                boundary (None: the whole view).

        Returns:
            Responses input items (dicts), in order; ``[]`` for an empty session.

        Raises:
            InvalidHistoryError: the stored items pair calls and outputs wrongly (index and
                ``call_id`` named).
            ContextOverflowError, ConfigError: from the compactor.
        """
        raw = list(await self.underlying.get_items())
        if not raw:
            return []
        model = self.model or self._seen_model or _stored_model(raw)
        r = await self._compact(raw, model, self.instructions, self.tools)
        view = copy.deepcopy(strip_metadata(r.to_send()))
        if limit is None:
            return view
        if limit <= 0:
            return []
        start = next((u.start for u in group_units(view, FMT) if len(view) - u.start <= limit),
                     len(view))
        return view[start:]

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items`` to the underlying session, as they are (no compaction here:
        the next read compacts)."""
        await self.underlying.add_items(items)

    async def pop_item(self) -> Any:
        """Remove and return the underlying session's most recent item (None when empty).
        The compactor's archive keeps it."""
        return await self.underlying.pop_item()

    async def clear_session(self) -> None:
        """Clear the underlying session. The compactor's archive keeps every item; the next
        history written starts a new branch of it (``store.restore`` returns that one)."""
        await self.underlying.clear_session()

    # ------------------------------------------------------------------ per model call
    async def call_model_input_filter(self, data: CallModelData[Any]) -> ModelInputData:
        """``RunConfig(call_model_input_filter=session.call_model_input_filter)``: compact
        the input of every model call of a run.

        The run's input is the view :meth:`get_items` returned (or a view this filter
        returned earlier) plus the items the run produced since; the compactor recognises
        our summary by its content and continues the session from it, so the archive stays
        the stored items in order. The calling agent's model name, ``instructions`` and
        tools are counted.

        Returns:
            ``ModelInputData`` with the items to send and the call's own instructions.

        Raises:
            InvalidHistoryError, ContextOverflowError, ConfigError: from the compactor.
        """
        md = data.model_data
        items = list(md.input)
        if not items:
            return md
        agent = data.agent
        model = self.model or _agent_model(agent) or self._seen_model
        self._seen_model = model or self._seen_model
        agent_tools = getattr(agent, "tools", None)
        tools = _tool_schemas(agent_tools) if agent_tools else self.tools
        instructions = md.instructions if md.instructions is not None else self.instructions
        r = await self._compact(items, model, instructions, tools)
        return ModelInputData(input=strip_metadata(r.to_send()), instructions=md.instructions)

    # ------------------------------------------------------------------ calibration
    def observe_usage(self, model: str, input_tokens: int) -> None:
        """Calibrate with the provider's count of the request just sent for ``model``
        (``usage.input_tokens`` of its response): compared with our estimate of the last
        compaction call's result, once (a second report without a new call is ignored).
        :attr:`hooks` calls it from ``RunHooks.on_llm_end``; call it from your own hooks
        when you pass others to the ``Runner``."""
        est, self._estimate = self._estimate, None
        if self.calibrate and est is not None and input_tokens > 0:
            self.calibrator.observe(model, est, input_tokens)

    # ------------------------------------------------------------------ internals
    async def _compact(self, items: list[Any], model: str | None, instructions: Any,
                       tools: list[dict[str, Any]] | None) -> Any:
        window = call_window(self.compactor, self.calibrator, window=self.window, model=model,
                             max_tokens=self.max_tokens, calibrate=self.calibrate)
        r = await self.compactor.compact_if_needed(
            items, model=model, window=window, system=instructions, tools=tools,
            max_tokens=self.max_tokens, session_id=self.compactor_session_id, fmt=FMT)
        self.last_result = r
        self._estimate = r.sent_tokens   # a recalled block placed in what is sent included
        return r


__all__ = ["CompactingSession"]
