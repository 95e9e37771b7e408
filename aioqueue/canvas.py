"""The canvas: signatures composed into chains, groups and chords, as pure values.

Every canvas has one wire form, Celery's signature object (``to_dict()``):
``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``, where a chain is
``subtask_type: "chain"`` with ``kwargs.tasks``, a group ``"group"`` with ``kwargs.tasks``
and a chord ``"chord"`` with ``kwargs.header`` / ``kwargs.body``. Sending a canvas is
three pure steps, the same on the client and in the worker:

1. :func:`freeze` gives every node its id (``options.task_id``) and ``reply_to``, so the
   caller knows every result id before anything is sent;
2. :func:`plan` turns a frozen node into the task messages to publish now: the first
   step of a chain, carrying the rest in ``embed.chain`` (last step first); one
   message per group member (``group``/``group_index`` headers); for a chord, the
   header members carrying the body in ``embed.chord``;
3. :func:`result_of` builds the promise (``AsyncResult`` / ``GroupResult``) for it.

A worker that finishes a task continues the workflow with the same :func:`plan`, given
the task's result as ``prev``: the next chain step, the links, or (in
``worker/chord.py``) the chord body once every header member is done.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar, cast

from .exceptions import ConfigurationError
from .message import TaskMessage, new_id
from .options import Options, build_message
from .result import AsyncResult, GroupResult
from .results.base import ResultBackend
from .results.disabled import DisabledBackend

__all__ = (
    "NOTHING",
    "Canvas",
    "Chain",
    "Chord",
    "Chunks",
    "Group",
    "Outgoing",
    "Plan",
    "Sender",
    "Signature",
    "Step",
    "chain",
    "chord",
    "freeze",
    "group",
    "plan",
    "result_of",
)

R = TypeVar("R")
S = TypeVar("S")
Node = dict[str, Any]


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


#: "No previous result": the first step of a workflow.
NOTHING: Any = _Nothing()


# The backend of an empty group's result: there is no member to wait for.
_NO_RESULTS: ResultBackend = DisabledBackend(tuple)


class Sender(Protocol):
    """What a canvas needs to be sent: the app implements it."""

    async def send_canvas(
        self, canvas: Canvas, *, intermediate_results: bool | None = None
    ) -> AsyncResult[Any]: ...

    async def send_many(self, signatures: Iterable[Signature[Any]]) -> list[AsyncResult[Any]]:
        """Send one task per signature, after checking every call's arguments
        (:meth:`check_arguments`): a call that does not fit sends nothing."""

    def check_arguments(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise :class:`~aioqueue.ArgumentsError` when ``task`` is known here and the
        arguments do not fit it."""


class _Sendable(Generic[R]):
    """``delay``/``apply_async`` for canvas values bound to an app."""

    app: Sender | None

    async def delay(self) -> AsyncResult[R]:
        """Send this canvas with the app it was made from.

        :raises ConfigurationError: it was not made from a task of an app.
        """
        return await self._send()

    async def apply_async(self, *, intermediate_results: bool | None = None) -> AsyncResult[R]:
        """The same as :meth:`delay` (options go on the parts, see ``with_options``).

        :param intermediate_results: whether a chain's steps before its last send their
            results, for ``result.parent.get()`` (``None``: the app's setting, off by
            default; see :class:`~aioqueue.App`).
        """
        return await self._send(intermediate_results)

    async def _send(self, intermediate_results: bool | None = None) -> AsyncResult[R]:
        canvas = cast(Canvas, self)
        if self.app is None:
            if isinstance(canvas, Group) and not canvas.tasks:
                # Nothing to send, nothing to wait for: what an app would give back.
                return cast(AsyncResult[R], GroupResult(new_id(), [], _NO_RESULTS))
            raise ConfigurationError(_unbound(canvas))
        for sig in _first_calls(canvas):
            self.app.check_arguments(sig.task, sig.args, sig.kwargs)
        sent = await self.app.send_canvas(canvas, intermediate_results=intermediate_results)
        return cast(AsyncResult[R], sent)


def _first_calls(canvas: Canvas) -> Iterator[Signature[Any]]:
    """The calls of ``canvas`` that run with the arguments they are sent with: later
    steps of a chain and a chord's body also get results, so they cannot be checked."""
    if isinstance(canvas, Signature):
        yield canvas
    elif isinstance(canvas, Chain):
        if canvas.tasks:
            yield from _first_calls(canvas.tasks[0])
    elif isinstance(canvas, Group):
        for member in canvas.tasks:
            yield from _first_calls(member)
    elif isinstance(canvas, Chord):
        yield from _first_calls(canvas.header)


@dataclass(frozen=True, slots=True)
class Signature(_Sendable[R]):
    """A task call as a value: name, arguments, send options.

    ``immutable`` signatures (``task.si(...)``) ignore the previous result in a chain;
    the others (``task.s(...)``) receive it as their first argument. ``link`` and
    ``link_error`` are signatures applied after success (with the result) or failure
    (with the failed task's id).
    """

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    immutable: bool = False
    link: tuple[Signature[Any], ...] = ()
    link_error: tuple[Signature[Any], ...] = ()
    app: Sender | None = field(default=None, compare=False, repr=False)

    def with_options(self, **options: Any) -> Signature[R]:
        """A copy with these send options set (see :class:`~aioqueue.Options`)."""
        return replace(self, options=self.options.merged(Options(**options)))

    def merged(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Signature[R]:
        """The call Celery makes of a partial given more arguments: ``args`` before its
        own, ``kwargs`` over its own; an immutable signature (``.si``) ignores both."""
        if self.immutable or not (args or kwargs):
            return self
        return replace(self, args=(*args, *self.args), kwargs={**self.kwargs, **(kwargs or {})})

    async def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[R]:
        """Send the task, completing the partial: ``add.s(1).delay(2)`` runs
        ``add(2, 1)`` (see :meth:`merged`).

        :raises ConfigurationError: it was not made from a task of an app.
        """
        return await _Sendable.delay(self.merged(args, kwargs))

    async def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        intermediate_results: bool | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task with more arguments (see :meth:`merged`) and these send options
        over its own (see :class:`~aioqueue.Options`). ``intermediate_results`` is
        accepted as by every canvas; a lone task has no earlier step."""
        sig = self.merged(tuple(args), kwargs)
        sig = sig.with_options(**options) if options else sig
        return await _Sendable._send(sig, intermediate_results)

    def set(self, **options: Any) -> Signature[R]:
        """Celery's spelling of :meth:`with_options`."""
        return self.with_options(**options)

    def on_success(self, callback: Signature[Any]) -> Signature[R]:
        """A copy that also applies ``callback`` with this task's result (``link=``)."""
        return replace(self, link=(*self.link, callback))

    def on_error(self, errback: Signature[Any]) -> Signature[R]:
        """A copy that also applies ``errback`` with this task's id on failure."""
        return replace(self, link_error=(*self.link_error, errback))

    def __or__(self, other: Canvas) -> Chain[Any]:
        return chain(self, other)

    def to_dict(self) -> Node:
        options = self.options.to_dict()
        if self.link:
            options["link"] = [s.to_dict() for s in self.link]
        if self.link_error:
            options["link_error"] = [s.to_dict() for s in self.link_error]
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": options,
            "subtask_type": None,
            "immutable": self.immutable,
        }

    @classmethod
    def from_dict(cls, data: Node) -> Signature[Any]:
        """Read Celery's signature object of a plain task."""
        options = data.get("options") or {}
        return cls(
            task=data["task"],
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            options=Options.from_dict(options),
            immutable=bool(data.get("immutable", False)),
            link=tuple(cls.from_dict(d) for d in options.get("link") or ()),
            link_error=tuple(cls.from_dict(d) for d in options.get("link_error") or ()),
        )


@dataclass(frozen=True, slots=True)
class Chain(_Sendable[R]):
    """Steps run one after another, each result passed to the next (see :func:`chain`)."""

    tasks: tuple[Canvas, ...]
    app: Sender | None = field(default=None, compare=False, repr=False)

    def __or__(self, other: Canvas) -> Chain[Any]:
        return chain(self, other)

    def to_dict(self) -> Node:
        return _node("celery.chain", "chain", {"tasks": [t.to_dict() for t in self.tasks]})


@dataclass(frozen=True, slots=True)
class Group(_Sendable[list[R]]):
    """Members run concurrently; the result is the list of their results, in order."""

    tasks: tuple[Canvas, ...]
    app: Sender | None = field(default=None, compare=False, repr=False)

    def __or__(self, other: Canvas) -> Chain[Any]:
        return chain(self, other)

    def to_dict(self) -> Node:
        return _node("celery.group", "group", {"tasks": [t.to_dict() for t in self.tasks]})


@dataclass(frozen=True, slots=True)
class Chord(_Sendable[R]):
    """A group (the header) whose ordered results are passed to one callback (the body)."""

    header: Group[Any]
    body: Signature[R]
    app: Sender | None = field(default=None, compare=False, repr=False)

    def __or__(self, other: Canvas) -> Chain[Any]:
        return chain(self, other)

    def to_dict(self) -> Node:
        return _node(
            "celery.chord",
            "chord",
            {"header": self.header.to_dict(), "body": self.body.to_dict(), "kwargs": {}},
        )


Canvas = Signature[Any] | Chain[Any] | Group[Any] | Chord[Any]


@dataclass(frozen=True, slots=True)
class Chunks(Generic[R]):
    """``task.chunks(items, n)``: the items split into batches of ``n`` starmap calls.

    Sending it sends :meth:`group`: one ``celery.starmap`` message per batch; the result
    is a list with one list of results per batch.
    """

    task: Signature[R]
    items: tuple[tuple[Any, ...], ...]
    size: int

    def group(self) -> Group[list[R]]:
        """The group of ``celery.starmap`` signatures, one per batch."""
        batches = [self.items[i : i + self.size] for i in range(0, len(self.items), self.size)]
        members: tuple[Signature[list[R]], ...] = tuple(
            Signature(
                "celery.starmap",
                kwargs={"task": self.task.to_dict(), "it": [list(b) for b in batch]},
                options=self.task.options,
                app=self.task.app,
            )
            for batch in batches
        )
        return Group(members, app=self.task.app)

    async def delay(self) -> AsyncResult[list[list[R]]]:
        """Send :meth:`group`."""
        return await self.group().delay()


def _unbound(canvas: Canvas) -> str:
    if isinstance(canvas, Signature):
        what = f"the signature of task {canvas.task!r}"
        how = f"make it from the task (`{canvas.task.rsplit('.', 1)[-1]}.s(...)`)"
    else:
        what = f"this {type(canvas).__name__.lower()}"
        how = "make one of its signatures from a task (`task.s(...)`)"
    return (
        f"{what} is not bound to an app, so it cannot be sent on its own: {how}, "
        "or send it with `await app.send_canvas(...)`"
    )


def _node(task: str, subtask_type: str, kwargs: Node) -> Node:
    return {
        "task": task,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "subtask_type": subtask_type,
        "immutable": False,
    }


def _app_of(items: Iterable[Canvas]) -> Sender | None:
    return next((i.app for i in items if i.app is not None), None)


def chain(*tasks: Canvas) -> Chain[Any]:
    """Steps run in order; each result is the first argument of the next (unless ``.si``).

    Nested chains are flattened. A group followed by another step becomes a chord with
    that step as its body, so the step receives the list of the group's results.
    """
    flat: list[Canvas] = []
    for t in tasks:
        flat.extend(t.tasks if isinstance(t, Chain) else (t,))
    if not flat:
        raise ConfigurationError("a chain needs at least one step")
    steps: list[Canvas] = []
    for t in flat:
        previous = steps[-1] if steps else None
        if isinstance(previous, Group) and isinstance(t, Signature):
            steps[-1] = Chord(previous, t, app=previous.app or t.app)
        else:
            steps.append(t)
    return Chain(tuple(steps), app=_app_of(flat))


def group(*tasks: Canvas | Iterable[Canvas]) -> Group[Any]:
    """Members run concurrently across workers: ``group(a, b)`` or ``group(iterable)``."""
    members: list[Canvas] = []
    for t in tasks:
        if isinstance(t, Signature | Chain | Group | Chord):
            members.append(t)
        else:
            members.extend(t)
    return Group(tuple(members), app=_app_of(members))


def chord(header: Group[Any] | Iterable[Canvas], body: Signature[R]) -> Chord[R]:
    """Run ``header`` as a group, then ``body`` once, with the list of results in order."""
    head = header if isinstance(header, Group) else group(header)
    return Chord(head, body, app=head.app or body.app)


# -- freeze: ids and reply_to on every node --------------------------------------------


def freeze(
    node: Node,
    reply_to: str | None,
    make_id: Callable[[], str] = new_id,
    *,
    intermediate_results: bool = True,
) -> Node:
    """A copy of ``node`` where every task, group and chord body has its id and reply_to.

    With ``intermediate_results=False`` the steps of a chain before its last get no
    ``reply_to``: their workers (aioqueue's or Celery's) send no result for them, while
    a failure still reaches the last step's promise (it names ``reply_to``).
    """
    frozen = _copy_structure(node)
    _freeze(frozen, reply_to, make_id, intermediate_results)
    return frozen


def _copy_structure(node: Node) -> Node:
    """A copy of the dicts and lists ``_freeze`` writes to (nodes, their options, the
    children of chains, groups and chords); arguments are shared, never written."""
    copied = {**node, "options": dict(node.get("options") or {})}
    kind = node.get("subtask_type")
    if kind in ("chain", "group"):
        kwargs = node["kwargs"]
        copied["kwargs"] = {**kwargs, "tasks": [_copy_structure(c) for c in kwargs["tasks"]]}
    elif kind == "chord":
        kwargs = node["kwargs"]
        copied["kwargs"] = {
            **kwargs,
            "header": _copy_structure(kwargs["header"]),
            "body": _copy_structure(kwargs["body"]),
        }
    return copied


def _freeze(
    node: Node, reply_to: str | None, make_id: Callable[[], str], intermediate: bool
) -> None:
    options = node.setdefault("options", {})
    options.setdefault("task_id", make_id())
    kind = node.get("subtask_type")
    if kind is None:
        if reply_to is not None and not options.get("ignore_result"):
            options.setdefault("reply_to", reply_to)
        return
    kwargs = node["kwargs"]
    if kind == "chain":
        last = len(kwargs["tasks"]) - 1
        for index, child in enumerate(kwargs["tasks"]):
            step_reply_to = reply_to if intermediate or index == last else None
            _freeze(child, step_reply_to, make_id, intermediate)
    elif kind == "group":
        # As Celery freezes a group: its place in a workflow, each task's index.
        options.setdefault("root_id", None)
        options.setdefault("parent_id", None)
        for index, child in enumerate(kwargs["tasks"]):
            _freeze(child, reply_to, make_id, intermediate)
            if child.get("subtask_type") is None:
                child["options"].setdefault("group_index", index)
    elif kind == "chord":
        _freeze(kwargs["header"], reply_to, make_id, intermediate)
        _freeze(kwargs["body"], reply_to, make_id, intermediate)
    else:
        raise ConfigurationError(f"unknown canvas type {kind!r}")


# -- plan: the messages to publish now --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """Where a node is applied: the previous result and the workflow around it."""

    prev: Any = NOTHING
    parent_id: str | None = None
    root_id: str | None = None
    chain: list[Node] | None = None  # what follows, last step first


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One task message and the options that route it."""

    message: TaskMessage
    options: Options


@dataclass(slots=True)
class Plan:
    """What applying a node publishes: messages, and the chords they take part in."""

    messages: list[Outgoing] = field(default_factory=list)
    chords: list[str] = field(default_factory=list)

    def extend(self, other: Plan) -> None:
        self.messages.extend(other.messages)
        self.chords.extend(other.chords)


def plan(node: Node, step: Step = Step()) -> Plan:
    """The messages that apply the frozen ``node`` at ``step`` (pure).

    :raises ConfigurationError: the canvas has a shape aioqueue cannot run.
    """
    kind = node.get("subtask_type")
    if kind is None:
        return Plan([_task_message(node, step)])
    if kind == "chain":
        return _plan_chain(node["kwargs"]["tasks"], step)
    if kind == "group":
        if step.chain:
            # A group with a step after it is a chord whose body is that step.
            body, rest = step.chain[-1], step.chain[:-1]
            as_chord = _node("celery.chord", "chord", {"header": node, "body": body})
            return plan(as_chord, replace(step, chain=rest))
        out = Plan()
        for index, member in enumerate(node["kwargs"]["tasks"]):
            member_step = Step(step.prev, step.parent_id, step.root_id)
            out.extend(plan(_member(member, node["options"]["task_id"], index), member_step))
        return out
    if kind == "chord":
        return _plan_chord(node, step)
    raise ConfigurationError(f"unknown canvas type {kind!r}")


def _member(node: Node, group_id: str, index: int, chord: Node | None = None) -> Node:
    """``node`` marked as member ``index`` of a group (on its last step, for a chain)."""
    marked = copy.copy(node)
    if node.get("subtask_type") == "chain":
        tasks = list(node["kwargs"]["tasks"])
        tasks[-1] = _member(tasks[-1], group_id, index, chord)
        marked["kwargs"] = {**node["kwargs"], "tasks": tasks}
        return marked
    if node.get("subtask_type") is not None:
        raise ConfigurationError(
            "a group member must be a task or a chain ending with a task, "
            f"not a {node.get('subtask_type')}"
        )
    options = {**node["options"], "group_id": group_id, "group_index": index}
    if chord is not None:
        options["chord"] = chord
    marked["options"] = options
    return marked


def _plan_chain(tasks: list[Node], step: Step) -> Plan:
    if not tasks:
        raise ConfigurationError("a chain needs at least one step")
    first, rest = tasks[0], tasks[1:]
    continuation = [*(step.chain or []), *reversed(rest)]
    return plan(first, replace(step, chain=continuation))


def _plan_chord(node: Node, step: Step) -> Plan:
    header, body = node["kwargs"]["header"], node["kwargs"]["body"]
    members = header["kwargs"]["tasks"] if isinstance(header, dict) else header
    group_id = header["options"]["task_id"]
    body = {**body, "options": {**body["options"], "group_id": group_id}}
    body["options"]["chord_size"] = len(members)
    if step.chain:
        body["options"]["chain"] = step.chain
    out = Plan(chords=[group_id])
    if not members:
        # Nothing to wait for: the body runs at once, with no results.
        out.extend(plan(body, Step([], step.parent_id, step.root_id, chain=step.chain)))
        return out
    for index, member in enumerate(members):
        member_step = Step(step.prev, step.parent_id, step.root_id)
        out.extend(plan(_member(member, group_id, index, body), member_step))
    return out


def _task_message(node: Node, step: Step) -> Outgoing:
    options = node.get("options") or {}
    sig = Signature.from_dict(node)
    args = sig.args
    if step.prev is not NOTHING and not sig.immutable:
        args = (step.prev, *args)
    chain_rest = step.chain if step.chain is not None else options.get("chain")
    message = build_message(
        sig.task,
        args,
        sig.kwargs,
        sig.options,
        reply_to=options.get("reply_to"),
        parent_id=step.parent_id,
        root_id=step.root_id,
        chain=chain_rest,
        chord=options.get("chord"),
        group=options.get("group_id") if "group_index" in options else None,
        group_index=options.get("group_index"),
        callbacks=options.get("link") or None,
        errbacks=options.get("link_error") or None,
    )
    return Outgoing(message, sig.options)


# -- results ----------------------------------------------------------------------------


def result_of(
    node: Node, backend: ResultBackend, parent: AsyncResult[Any] | None = None
) -> AsyncResult[Any]:
    """The promise for a frozen node: the last step of a chain (with ``parent`` links
    to the steps before it), a ``GroupResult`` for a group, the body for a chord."""
    kind = node.get("subtask_type")
    if kind is None:
        options = node["options"]
        # A step frozen without reply_to while results are on: nothing will arrive.
        sent = not (
            backend.reply_to is not None
            and not options.get("reply_to")
            and not options.get("ignore_result")
        )
        return AsyncResult(options["task_id"], backend, parent=parent, sent=sent)
    if kind == "chain":
        result = parent
        for child in node["kwargs"]["tasks"]:
            result = result_of(child, backend, result)
        assert result is not None
        return result
    if kind == "group":
        members = [result_of(m, backend) for m in node["kwargs"]["tasks"]]
        return GroupResult(node["options"]["task_id"], members, backend, parent=parent)
    if kind == "chord":
        header = result_of(node["kwargs"]["header"], backend, parent)
        return result_of(node["kwargs"]["body"], backend, header)
    raise ConfigurationError(f"unknown canvas type {kind!r}")
