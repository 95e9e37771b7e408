"""What each canvas compiles to: :func:`freeze` + :func:`plan`, chord decisions, followups.

Everything here is pure: canvases are frozen with a deterministic id counter and planned
into task messages, which are compared with hand-written expectations and with the
Celery 5.7 captures in ``tests/vectors``. For the captures, the ids, reply queue and
origin the vector lists as volatile are fed back in (as the ``make_id`` ids, the
``reply_to`` and the message's origin), so the rest must match the capture exactly: same
header keys in the same order, same values, same body bytes.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aioqueue import (
    App,
    ConfigurationError,
    GroupResult,
    ResultNotSentError,
    State,
    chain,
    chord,
    group,
)
from aioqueue.canvas import Canvas, Node, Outgoing, Step, freeze, plan, result_of
from aioqueue.message import ResultMessage, TaskMessage, full_headers, utc_now
from aioqueue.worker.chord import Decision, decide
from aioqueue.worker.completion import followups
from aioqueue.worker.execute import failure_state, success_state

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "celery-vectors"
RQ = "reply-queue"

app = App("canvas-unit")


@app.task(name="tasks.multiply")
async def multiply(x: int, y: int) -> int:
    return x * y


@app.task(name="tasks.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tasks.xsum")
async def xsum(values: list[int]) -> int:
    return sum(values)


# -- helpers ----------------------------------------------------------------------------


def counter(prefix: str = "id") -> Callable[[], str]:
    """A deterministic ``make_id``: id0, id1, ... in freeze order."""
    numbers = itertools.count()
    return lambda: f"{prefix}{next(numbers)}"


def frozen(canvas: Canvas, reply_to: str | None = RQ) -> Node:
    return freeze(canvas.to_dict(), reply_to, make_id=counter())


def messages(node: Node, step: Step | None = None) -> list[TaskMessage]:
    return [o.message for o in plan(node, step or Step()).messages]


def sig(task: str, *args: Any, task_id: str, immutable: bool = False, **options: Any) -> Node:
    """An embedded signature as the wire carries it."""
    return {
        "task": task,
        "args": list(args),
        "kwargs": {},
        "options": {"task_id": task_id, "reply_to": RQ, **options},
        "subtask_type": None,
        "immutable": immutable,
    }


def load_vector(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{case}.json").read_text("utf-8"))
    assert data["case"] == case
    return data


def vector_body_bytes(vector: dict[str, Any]) -> bytes:
    return base64.b64decode(vector["body_b64"])


def _lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def same_repr(ours: str, celery: str) -> bool:
    """Display-only reprs: the same values, whether tuples or lists are shown."""
    return bool(_lists(ast.literal_eval(ours)) == _lists(ast.literal_eval(celery)))


# -- against the Celery captures --------------------------------------------------------


@dataclass(frozen=True)
class WireCase:
    """How the capture was made, said with aioqueue."""

    build: Callable[[], Canvas]
    ids: Callable[[], list[str]]  # the capture's ids, in freeze order
    index: int = 0  # which planned message the capture shows
    reprs_differ: bool = False  # argsrepr/kwargsrepr: Celery shows tuples, we lists


def _h(case: str, key: str) -> str:
    return str(load_vector(case)["headers"][key])


def _embedded_chain_ids(case: str) -> list[str]:
    steps = load_vector(case)["body_json"][2]["chain"]
    return [s["options"]["task_id"] for s in reversed(steps)]


def _chord_body_id() -> str:
    return str(
        load_vector("task-chord-redis-backend")["body_json"][2]["chord"]["options"]["task_id"]
    )


def _group_ids() -> list[str]:
    members = ("task-group", "task-group-1", "task-group-2")
    return [_h("task-group", "group"), *(_h(c, "id") for c in members)]


def _chord_ids() -> list[str]:
    members = ("task-chord-redis-backend", "task-chord-redis-backend-1")
    header = _h("task-chord-redis-backend", "group")
    return ["chord-node", header, *(_h(c, "id") for c in members), _chord_body_id()]


def _chunks_ids() -> list[str]:
    return [_h("task-chunks", "group"), _h("task-chunks", "id"), _h("task-chunks-1", "id")]


WIRE_CASES: dict[str, WireCase] = {
    "task-chain_s": WireCase(
        lambda: chain(multiply.s(2, 3), multiply.s(4), multiply.s(5)),
        lambda: ["chain-node", _h("task-chain_s", "id"), *_embedded_chain_ids("task-chain_s")],
    ),
    "task-chain_pipe_si": WireCase(
        lambda: multiply.s(2, 3) | multiply.si(4, 5) | add.s(1),
        lambda: [
            "chain-node",
            _h("task-chain_pipe_si", "id"),
            *_embedded_chain_ids("task-chain_pipe_si"),
        ],
    ),
    "task-group": WireCase(lambda: group(multiply.s(i, i) for i in range(3)), _group_ids, 0),
    "task-group-1": WireCase(lambda: group(multiply.s(i, i) for i in range(3)), _group_ids, 1),
    "task-group-2": WireCase(lambda: group(multiply.s(i, i) for i in range(3)), _group_ids, 2),
    "task-chord-redis-backend": WireCase(
        lambda: chord([multiply.s(1, 1), multiply.s(2, 2)], xsum.s()), _chord_ids, 0
    ),
    "task-chord-redis-backend-1": WireCase(
        lambda: chord([multiply.s(1, 1), multiply.s(2, 2)], xsum.s()), _chord_ids, 1
    ),
    "task-map": WireCase(
        lambda: xsum.map([[1, 2], [3, 4]]), lambda: [_h("task-map", "id")], reprs_differ=True
    ),
    "task-starmap": WireCase(
        lambda: multiply.starmap([(1, 2), (3, 4)]),
        lambda: [_h("task-starmap", "id")],
        reprs_differ=True,
    ),
    "task-chunks": WireCase(
        lambda: multiply.chunks(zip(range(4), range(4), strict=True), 2).group(),
        _chunks_ids,
        0,
        reprs_differ=True,
    ),
    "task-chunks-1": WireCase(
        lambda: multiply.chunks(zip(range(4), range(4), strict=True), 2).group(),
        _chunks_ids,
        1,
        reprs_differ=True,
    ),
    "task-link_link_error": WireCase(
        lambda: multiply.s(3, 4).on_success(add.s(1)).on_error(xsum.si([0])),
        lambda: [_h("task-link_link_error", "id")],
    ),
}
VECTOR_FILES = (*WIRE_CASES, "task-chain-next-step", "result-chain-first-step")


def test_canvas_vectors_are_copied_into_the_repository() -> None:
    for case in VECTOR_FILES:
        assert load_vector(case)["celery_version"] == "5.7.0"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/celery-vectors is not here")
@pytest.mark.parametrize("case", VECTOR_FILES)
def test_copied_canvas_vector_matches_shared(case: str) -> None:
    assert (VECTORS / f"{case}.json").read_bytes() == (SHARED / f"{case}.json").read_bytes()


def _compare_with_vector(case: str, out: Outgoing, reprs_differ: bool = False) -> None:
    vector = load_vector(case)
    expected, props = vector["headers"], vector["properties"]
    # The origin is the publishing process: volatile, so take the capture's.
    message = out.message.model_copy(update={"origin": expected["origin"]})
    envelope = app.broker.envelope(message)
    headers = full_headers(envelope.headers)

    # The capture lists ids, origin and reply_to as volatile: they were fed back in,
    # so every header must be the same, in the same order.
    assert {"headers.id", "headers.root_id", "headers.origin"} <= set(vector["volatile"])
    assert list(headers) == list(expected)
    for key, value in expected.items():
        if reprs_differ and key in ("argsrepr", "kwargsrepr"):
            assert same_repr(headers[key], value), key
        else:
            assert headers[key] == value, key

    assert envelope.correlation_id == props["correlation_id"] == headers["id"]
    assert envelope.reply_to == props["reply_to"]
    assert envelope.persistent and props["delivery_mode"] == 2
    assert (envelope.priority or 0) == props["priority"]
    assert vector["exchange"] == ""
    assert (out.options.queue or "celery") == vector["routing_key"]

    body = json.loads(envelope.body)
    chord_body = body[2]["chord"]
    if chord_body is not None:
        # aioqueue's one addition: members carry the chord's size (Celery keeps it in
        # Redis), so a worker can tell when every part is in.
        assert chord_body["options"].pop("chord_size") == 2
        assert app.codec.encode(body) == vector_body_bytes(vector)
    else:
        assert envelope.body == vector_body_bytes(vector)
    assert body == vector["body_json"]


@pytest.mark.parametrize("case", WIRE_CASES)
def test_planned_message_matches_celery_capture(case: str) -> None:
    wire = WIRE_CASES[case]
    vector = load_vector(case)
    ids = iter(wire.ids())
    node = freeze(wire.build().to_dict(), vector["properties"]["reply_to"], lambda: next(ids))
    outgoing = plan(node).messages

    _compare_with_vector(case, outgoing[wire.index], wire.reprs_differ)


def test_next_chain_step_matches_celery_capture() -> None:
    """The worker's side: the step published after the first one, and the first one's
    result naming it as a child (``task-chain-next-step``, ``result-chain-first-step``)."""
    step = load_vector("task-chain-next-step")
    first_result = load_vector("result-chain-first-step")
    first_id, next_id = step["headers"]["parent_id"], step["headers"]["id"]
    ids = iter(["chain-node", first_id, next_id])
    canvas = multiply.s(2, 3) | multiply.s(4).set(queue="other")
    node = freeze(canvas.to_dict(), step["properties"]["reply_to"], lambda: next(ids))
    (first,) = messages(node)

    state = success_state(first, 6, [])
    todo = followups(first, state, app.codec)

    (outgoing,) = todo.tasks.messages
    _compare_with_vector("task-chain-next-step", outgoing)
    reported = state.model_copy(
        update={
            "children": todo.children(),
            "date_done": datetime.fromisoformat(first_result["body_json"]["date_done"]),
        }
    )
    assert first_result["properties"]["correlation_id"] == first.id
    assert app.codec.encode(reported.body()) == vector_body_bytes(first_result)


# -- shapes -----------------------------------------------------------------------------


def test_freeze_gives_every_node_an_id_and_the_caller_knows_them_all() -> None:
    node = frozen(chain(add.s(1, 1), add.s(2), add.s(3)))
    steps = node["kwargs"]["tasks"]

    assert node["options"] == {"task_id": "id0"}  # the chain itself: no reply_to
    assert [s["options"] for s in steps] == [
        {"task_id": f"id{i}", "reply_to": RQ} for i in (1, 2, 3)
    ]
    result = result_of(node, app.results)
    assert result.id == "id3"
    assert result.parent is not None and result.parent.id == "id2"
    assert result.parent.parent is not None and result.parent.parent.id == "id1"
    assert result.parent.parent.parent is None


def test_freeze_keeps_given_ids_and_skips_reply_to_when_results_are_ignored() -> None:
    canvas = chain(add.s(1, 1).set(task_id="mine"), add.s(2).set(ignore_result=True))
    node = frozen(canvas)
    first, second = node["kwargs"]["tasks"]

    assert first["options"] == {"task_id": "mine", "reply_to": RQ}
    assert second["options"].pop("task_id").startswith("id")
    assert second["options"] == {"ignore_result": True}
    assert frozen(add.s(1, 1), reply_to=None)["options"] == {"task_id": "id0"}


def test_without_intermediate_results_only_the_last_steps_name_reply_to() -> None:
    canvas = chain(
        add.s(1, 1),
        chord([add.s(1), chain(add.s(2), add.s(3))], add.s(4)),
        chain(add.s(5), group(add.s(6), add.s(7))),
    )
    node = freeze(canvas.to_dict(), RQ, make_id=counter(), intermediate_results=False)

    def replies(n: Node) -> list[tuple[Any, bool]]:
        if n.get("subtask_type") is None:
            return [(n["args"], "reply_to" in n["options"])]
        kw = n["kwargs"]
        children = [kw["header"], kw["body"]] if "header" in kw else kw["tasks"]
        return [r for child in children for r in replies(child)]

    # The group ending the chain is its result; everything before it is not sent.
    assert replies(node) == [
        ([1, 1], False), ([1], False), ([2], False), ([3], False), ([4], False),
        ([5], False), ([6], True), ([7], True),
    ]  # fmt: skip
    result = result_of(node, app.results)
    assert isinstance(result, GroupResult) and result.parent is not None
    with pytest.raises(ResultNotSentError, match=result.parent.id):
        asyncio.run(result.parent.get())
    # The messages still carry every step, in Celery's form.
    (first,) = messages(node)
    assert [n["options"]["task_id"] for n in first.chain or ()] == [
        s["options"]["task_id"] for s in node["kwargs"]["tasks"][:0:-1]
    ]


def test_freeze_does_not_touch_the_canvas() -> None:
    canvas = chain(add.s(1, 1), add.s(2))
    before = canvas.to_dict()
    frozen(canvas)
    assert canvas.to_dict() == before
    assert "task_id" not in before["kwargs"]["tasks"][0]["options"]
    # Nor the node it is given (beat freezes the same stored entry for every slot).
    node = chain(add.s([1]), group(add.s(2), chord([add.s(3)], add.s(4)))).to_dict()
    kept = copy.deepcopy(node)
    done = freeze(node, RQ)
    assert node == kept and done != kept
    assert done["kwargs"]["tasks"][0]["args"] is node["kwargs"]["tasks"][0]["args"]


def test_chain_publishes_its_first_step_and_embeds_the_rest_last_step_first() -> None:
    node = frozen(chain(add.s(1, 1), multiply.s(2), add.s(3), multiply.s(4)))

    (first,) = messages(node)

    assert (first.task, first.id, first.args) == ("tasks.add", "id1", [1, 1])
    assert (first.root_id, first.parent_id, first.group) == (None, None, None)
    assert first.headers()["root_id"] == "id1"
    assert first.reply_to == RQ
    assert first.chain == [
        sig("tasks.multiply", 4, task_id="id4"),
        sig("tasks.add", 3, task_id="id3"),
        sig("tasks.multiply", 2, task_id="id2"),
    ]


def test_pipe_is_chain_and_nested_chains_are_flattened() -> None:
    a, b, c = add.s(1, 1), add.s(2), add.s(3)
    assert (a | b | c).to_dict() == chain(a, b, c).to_dict()
    assert chain(a, chain(b, c)).to_dict() == chain(a, b, c).to_dict()
    assert (a | (b | c)).to_dict()["kwargs"]["tasks"] == [x.to_dict() for x in (a, b, c)]


def test_immutable_signatures_are_marked_and_ignore_the_previous_result() -> None:
    node = frozen(add.s(1, 1) | add.si(5, 5) | add.s(7))
    (first,) = messages(node)
    assert first.chain is not None
    assert [s["immutable"] for s in first.chain] == [False, True]

    (immutable,) = followups(first, success_state(first, 2, []), app.codec).tasks.messages
    assert immutable.message.args == [5, 5]
    done = success_state(immutable.message, 10, [])
    (mutable,) = followups(immutable.message, done, app.codec).tasks.messages
    assert mutable.message.args == [10, 7]


def test_options_route_and_delay_each_step() -> None:
    canvas = add.s(1, 1).set(queue="q1", priority=3) | add.s(2).with_options(
        queue="q2", countdown=30, expires=600
    )
    node = frozen(canvas)
    before = utc_now()
    (out,) = plan(node).messages
    assert out.options.queue == "q1"
    assert (out.message.priority, out.message.eta, out.message.expires) == (3, None, None)
    embedded = {"queue": "q2", "countdown": 30, "expires": 600, "task_id": "id2", "reply_to": RQ}
    assert out.message.chain == [{**sig("tasks.add", 2, task_id="id2"), "options": embedded}]

    # The worker applies the embedded options when it publishes the step.
    todo = followups(out.message, success_state(out.message, 2, []), app.codec)
    (nxt,) = todo.tasks.messages
    after = utc_now()
    assert nxt.options.queue == "q2"
    assert nxt.message.eta is not None and nxt.message.expires is not None
    assert before + timedelta(seconds=30) <= nxt.message.eta <= after + timedelta(seconds=30)
    assert before + timedelta(seconds=600) <= nxt.message.expires <= after + timedelta(seconds=600)
    assert nxt.message.args == [2, 2]


def test_task_default_options_travel_with_its_signatures() -> None:
    routed = add.with_options(queue="adds")
    node = frozen(multiply.s(1, 2) | routed.s(3))
    (first,) = messages(node)
    assert first.chain is not None and first.chain[0]["options"]["queue"] == "adds"


def test_links_go_into_callbacks_and_errbacks() -> None:
    canvas = add.s(1, 2).on_success(multiply.s(10)).on_success(xsum.si([1])).on_error(add.si(0, 0))
    (message,) = messages(frozen(canvas))

    assert message.callbacks == [multiply.s(10).to_dict(), xsum.si([1]).to_dict()]
    assert message.errbacks == [add.si(0, 0).to_dict()]
    assert message.callbacks[0]["immutable"] is False
    assert message.errbacks[0]["immutable"] is True
    assert message.chain is None and message.chord is None


def test_group_sends_one_message_per_member_with_group_and_index() -> None:
    node = frozen(group(add.s(i, i) for i in range(4)))
    sent = messages(node)

    assert [m.id for m in sent] == ["id1", "id2", "id3", "id4"]
    assert [m.args for m in sent] == [[i, i] for i in range(4)]
    assert {m.group for m in sent} == {"id0"}
    assert [m.group_index for m in sent] == [0, 1, 2, 3]
    assert all(m.chain is None and m.chord is None and m.parent_id is None for m in sent)
    assert [m.headers()["root_id"] for m in sent] == [m.id for m in sent]
    result = result_of(node, app.results)
    assert isinstance(result, GroupResult)
    assert (result.id, [r.id for r in result.results]) == ("id0", ["id1", "id2", "id3", "id4"])


def _chord_members(sent: list[TaskMessage]) -> tuple[Node, list[TaskMessage]]:
    bodies = [m.chord for m in sent]
    assert bodies[0] is not None and all(b == bodies[0] for b in bodies)
    return bodies[0], sent


def test_chord_members_carry_the_body_with_group_id_task_id_and_size() -> None:
    node = frozen(chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], xsum.s(100)))
    # chord node id0, header group id1, members id2..id4, body id5
    todo = plan(node)
    body, sent = _chord_members([o.message for o in todo.messages])

    assert todo.chords == ["id1"]
    assert [(m.id, m.group, m.group_index) for m in sent] == [
        ("id2", "id1", 0),
        ("id3", "id1", 1),
        ("id4", "id1", 2),
    ]
    assert body == {
        **sig("tasks.xsum", 100, task_id="id5"),
        "options": {"task_id": "id5", "reply_to": RQ, "group_id": "id1", "chord_size": 3},
    }
    result = result_of(node, app.results)
    assert result.id == "id5"
    assert isinstance(result.parent, GroupResult) and result.parent.id == "id1"
    assert [r.id for r in result.parent.results] == ["id2", "id3", "id4"]


def test_group_piped_into_a_task_is_a_chord() -> None:
    canvas = group(add.s(1, 1), add.s(2, 2)) | xsum.s()
    as_chord = chord([add.s(1, 1), add.s(2, 2)], xsum.s())

    assert canvas.to_dict() == chain(as_chord).to_dict()
    assert canvas.tasks[0].to_dict() == as_chord.to_dict()
    node = frozen(canvas)
    body, sent = _chord_members(messages(node))
    assert body["task"] == "tasks.xsum" and body["options"]["chord_size"] == 2
    assert result_of(node, app.results).id == body["options"]["task_id"]


def test_chord_followed_by_a_task_keeps_the_continuation_in_the_body() -> None:
    node = frozen(chord([add.s(1, 1), add.s(2, 2)], xsum.s()) | multiply.s(10))
    # chain id0, chord id1, header id2, members id3 id4, body id5, then id6
    body, sent = _chord_members(messages(node))

    assert [m.chain for m in sent] == [None, None]
    assert body["options"]["chain"] == [sig("tasks.multiply", 10, task_id="id6")]
    assert body["options"]["group_id"] == "id2"

    # Firing the body (as worker/chord.py does) publishes it with the chain.
    (fired,) = messages(body, Step([2, 4], parent_id="id4", root_id="id3"))
    assert (fired.id, fired.args, fired.parent_id, fired.root_id) == ("id5", [[2, 4]], "id4", "id3")
    assert fired.chain == [sig("tasks.multiply", 10, task_id="id6")]
    assert fired.group is None  # the body is not a group member


def test_chord_in_the_middle_of_a_chain() -> None:
    node = frozen(chain(add.s(1, 1), chord([add.s(10), add.s(20)], xsum.s()), multiply.s(2)))
    # chain id0, first id1, chord id2, header id3, members id4 id5, body id6, last id7
    (first,) = messages(node)
    assert first.chain is not None
    assert [s["subtask_type"] for s in first.chain] == [None, "chord"]
    assert first.chain[0] == sig("tasks.multiply", 2, task_id="id7")

    todo = followups(first, success_state(first, 2, []), app.codec)

    assert todo.tasks.chords == ["id3"]
    sent = [o.message for o in todo.tasks.messages]
    body, _ = _chord_members(sent)
    assert [(m.id, m.args, m.group_index) for m in sent] == [
        ("id4", [2, 10], 0),
        ("id5", [2, 20], 1),
    ]
    assert all(m.parent_id == "id1" and m.root_id == "id1" for m in sent)
    assert body["options"]["chain"] == [sig("tasks.multiply", 2, task_id="id7")]
    assert body["options"]["task_id"] == "id6"
    assert result_of(node, app.results).id == "id7"


def test_task_piped_into_a_group_gives_each_member_the_result() -> None:
    node = frozen(add.s(1, 1) | group(add.s(10), add.s(20)))
    (first,) = messages(node)
    assert first.chain is not None and first.chain[0]["subtask_type"] == "group"

    todo = followups(first, success_state(first, 2, []), app.codec)
    sent = [o.message for o in todo.tasks.messages]
    assert [(m.args, m.group, m.group_index) for m in sent] == [
        ([2, 10], "id2", 0),
        ([2, 20], "id2", 1),
    ]
    assert todo.tasks.chords == []
    assert isinstance(result_of(node, app.results), GroupResult)


def test_chain_inside_a_group_marks_its_last_step() -> None:
    node = frozen(group(chain(add.s(1, 1), multiply.s(3)), add.s(5, 5)))
    # group id0, chain id1, its steps id2 id3, member id4
    chained, plain = messages(node)

    assert (chained.id, chained.group, chained.group_index) == ("id2", None, None)
    assert chained.chain == [sig("tasks.multiply", 3, task_id="id3", group_id="id0", group_index=0)]
    assert (plain.id, plain.group, plain.group_index) == ("id4", "id0", 1)
    # The last step, once published, is member 0 of the group.
    todo = followups(chained, success_state(chained, 2, []), app.codec)
    (last,) = [o.message for o in todo.tasks.messages]
    assert (last.id, last.args, last.group, last.group_index) == ("id3", [2, 3], "id0", 0)
    result = result_of(node, app.results)
    assert isinstance(result, GroupResult)
    assert [r.id for r in result.results] == ["id3", "id4"]


def test_chain_inside_a_chord_header_carries_the_body_on_its_last_step() -> None:
    node = frozen(chord([chain(add.s(1, 1), multiply.s(3)), add.s(5, 5)], xsum.s()))
    # chord id0, header id1, chain id2 (steps id3 id4), member id5, body id6
    chained, plain = messages(node)

    assert chained.chord is None and chained.group is None
    assert chained.chain is not None
    (last,) = chained.chain
    assert last["options"]["group_id"] == "id1" and last["options"]["group_index"] == 0
    assert last["options"]["chord"] == plain.chord
    assert plain.chord is not None and plain.chord["options"]["task_id"] == "id6"

    todo = followups(chained, success_state(chained, 2, []), app.codec)
    (published,) = [o.message for o in todo.tasks.messages]
    assert (published.group, published.group_index, published.chord) == ("id1", 0, plain.chord)


def test_empty_chord_runs_its_body_at_once_with_no_results() -> None:
    node = frozen(chord([], xsum.s()))
    (body,) = messages(node)
    assert (body.task, body.args, body.group) == ("tasks.xsum", [[]], None)


def test_a_chord_or_group_cannot_be_a_group_member() -> None:
    with pytest.raises(ConfigurationError, match="group member"):
        plan(frozen(group(chord([add.s(1, 1)], xsum.s()), add.s(2, 2))))
    with pytest.raises(ConfigurationError, match="group member"):
        plan(frozen(group(group(add.s(1, 1)), add.s(2, 2))))


def test_unknown_canvas_types_are_refused() -> None:
    node = {"task": "x", "args": [], "kwargs": {}, "options": {}, "subtask_type": "weird"}
    with pytest.raises(ConfigurationError, match="weird"):
        freeze(node, RQ)
    with pytest.raises(ConfigurationError, match="weird"):
        plan({**node, "options": {"task_id": "x"}})
    with pytest.raises(ConfigurationError):
        chain()


def test_map_and_starmap_call_the_builtin_tasks() -> None:
    (mapped,) = messages(frozen(xsum.map([[1, 2], (3, 4)])))
    (starred,) = messages(frozen(multiply.starmap([(1, 2), (3, 4)])))

    assert (mapped.task, mapped.args) == ("celery.map", [])
    assert mapped.kwargs == {"task": xsum.s().to_dict(), "it": [[1, 2], [3, 4]]}
    assert (starred.task, starred.args) == ("celery.starmap", [])
    assert starred.kwargs == {"task": multiply.s().to_dict(), "it": [[1, 2], [3, 4]]}
    assert mapped.kwargs["task"]["options"] == {}


def test_chunks_is_a_group_of_starmaps_one_per_chunk() -> None:
    chunks = add.chunks(zip(range(5), range(10, 15), strict=True), 2)
    node = frozen(chunks.group())
    sent = messages(node)

    assert [m.task for m in sent] == ["celery.starmap"] * 3
    assert [m.kwargs["it"] for m in sent] == [
        [[0, 10], [1, 11]],
        [[2, 12], [3, 13]],
        [[4, 14]],
    ]
    assert all(m.kwargs["task"] == add.s().to_dict() and m.args == [] for m in sent)
    assert [(m.group, m.group_index) for m in sent] == [("id0", 0), ("id0", 1), ("id0", 2)]
    with pytest.raises(ValueError, match="chunk size"):
        add.chunks([(1, 2)], 0)


# -- chord decisions --------------------------------------------------------------------


def part(index: int, result: Any = None, status: str = "SUCCESS") -> dict[str, Any]:
    return {"index": index, "task_id": f"m{index}", "status": status, "result": result}


FAILED = part(1, {"exc_type": "ValueError"}, "FAILURE")


@pytest.mark.parametrize(
    ("parts", "size", "expected"),
    [
        pytest.param([], 2, Decision("wait"), id="nothing-yet"),
        pytest.param([part(0, "a")], 2, Decision("wait"), id="one-of-two"),
        pytest.param([part(1, "b")], 2, Decision("wait"), id="only-the-last"),
        pytest.param(
            [part(2, "c"), part(0, "a"), part(1, "b")],
            3,
            Decision("fire", results=["a", "b", "c"]),
            id="all-in-any-order",
        ),
        pytest.param(
            [part(0, "a"), part(0, "a")], 2, Decision("wait"), id="duplicate-counted-once"
        ),
        pytest.param(
            [part(1, "b"), part(0, "a"), part(1, "b"), part(0, "a")],
            2,
            Decision("fire", results=["a", "b"]),
            id="duplicates-then-complete",
        ),
        pytest.param([part(0, None)], 1, Decision("fire", results=[None]), id="none-result"),
        pytest.param([part(0, "a"), FAILED], 3, Decision("fail", failure=FAILED), id="one-failure"),
        pytest.param(
            [part(3, "x", "FAILURE"), part(0, "a"), FAILED, part(2, "y", "REVOKED")],
            4,
            Decision("fail", failure=FAILED),
            id="lowest-failed-index",
        ),
        pytest.param(
            [part(0, "r", "REVOKED")],
            2,
            Decision("fail", failure=part(0, "r", "REVOKED")),
            id="revoked-fails",
        ),
        pytest.param([part(0, "a"), {"fired": True}], 2, Decision("done"), id="fired-waiting"),
        pytest.param(
            [part(0, "a"), part(1, "b"), {"fired": True}], 2, Decision("done"), id="fired-full"
        ),
        pytest.param([{"fired": True}, FAILED], 2, Decision("done"), id="fired-then-failure"),
    ],
)
def test_decide(parts: list[dict[str, Any]], size: int, expected: Decision) -> None:
    assert decide(parts, size) == expected


def test_decide_orders_results_by_index_for_a_large_chord() -> None:
    parts = [part(i, i * i) for i in reversed(range(100))]
    assert decide(parts, 100) == Decision("fire", results=[i * i for i in range(100)])
    assert decide(parts[:-1], 100) == Decision("wait")


# -- followups --------------------------------------------------------------------------


def _first_step(canvas: Canvas) -> TaskMessage:
    (first,) = messages(frozen(canvas))
    return first


def _states(todo_states: list[Any]) -> dict[str, ResultMessage]:
    out = {}
    for publish in todo_states:
        assert publish.exchange == "" and publish.routing_key == RQ
        assert not publish.envelope.persistent
        state = ResultMessage.model_validate(app.codec.decode(publish.envelope.body, None))
        assert publish.envelope.correlation_id == state.task_id
        out[state.task_id] = state
    return out


def test_followup_is_the_next_step_with_the_result_prepended() -> None:
    first = _first_step(add.s(1, 1) | add.s(10) | add.s(100))
    todo = followups(first, success_state(first, 2, []), app.codec)

    (nxt,) = [o.message for o in todo.tasks.messages]
    assert (nxt.id, nxt.args, nxt.parent_id, nxt.root_id) == ("id2", [2, 10], "id1", "id1")
    assert nxt.reply_to == RQ
    assert nxt.chain == [sig("tasks.add", 100, task_id="id3")]
    assert todo.states == []
    assert todo.children() == [[["id2", None], None]]

    # ... and so on to the end, keeping the chain's root.
    then = followups(nxt, success_state(nxt, 12, []), app.codec)
    (last,) = [o.message for o in then.tasks.messages]
    assert (last.id, last.args, last.parent_id, last.root_id) == ("id3", [12, 100], "id2", "id1")
    assert last.chain == []
    finished = followups(last, success_state(last, 112, []), app.codec)
    assert finished.tasks.messages == [] and finished.states == []
    assert finished.children() == []


def test_followup_of_an_immutable_step_ignores_the_result() -> None:
    first = _first_step(add.s(1, 1) | add.si(5, 5))
    todo = followups(first, success_state(first, 2, []), app.codec)
    assert [o.message.args for o in todo.tasks.messages] == [[5, 5]]


def test_failed_chain_step_fails_every_remaining_step() -> None:
    first = _first_step(add.s(1, 1) | add.s(2) | add.s(3).set(ignore_result=True) | add.s(4))
    failure = failure_state(first.id, ValueError("boom"))

    todo = followups(first, failure, app.codec)

    assert todo.tasks.messages == []
    states = _states(todo.states)
    assert set(states) == {"id2", "id4"}  # id3 ignores its result: nobody waits for it
    for task_id, state in states.items():
        assert state.task_id == task_id
        assert state.status is State.FAILURE
        assert state.result == failure.result
        assert state.result["exc_type"] == "ValueError"
        assert state.traceback == failure.traceback


def test_failed_step_before_a_chord_fails_the_chord_and_what_follows_it() -> None:
    first = _first_step(chain(add.s(1, 1), chord([add.s(1), add.s(2)], xsum.s()), add.s(3)))
    # chain id0, first id1, chord id2, header id3, members id4 id5, body id6, last id7
    todo = followups(first, failure_state(first.id, KeyError("k")), app.codec)

    assert todo.tasks.messages == []
    assert set(_states(todo.states)) == {"id6", "id7"}


def test_failed_chain_in_a_chord_header_reports_its_last_step_to_the_chord() -> None:
    node = frozen(chord([chain(add.s(1, 1), add.s(2), add.s(3)), add.s(5, 5)], xsum.s()))
    # chord id0, header id1, chain id2 (steps id3 id4 id5), member id6, body id7
    first, _ = messages(node)
    failure = failure_state(first.id, ValueError("boom"))

    todo = followups(first, failure, app.codec)

    assert set(_states(todo.states)) == {"id4", "id5"}
    (member,) = todo.chord_members
    assert (member.id, member.group, member.group_index) == ("id5", "id1", 0)
    assert member.chord is not None and member.chord["options"]["task_id"] == "id7"
    # Nothing of the kind on success, or for a chain outside a chord.
    assert followups(first, success_state(first, 2, []), app.codec).chord_members == []
    plain = _first_step(add.s(1, 1) | add.s(2))
    assert followups(plain, failure, app.codec).chord_members == []


def test_callbacks_run_on_success_and_errbacks_on_failure() -> None:
    canvas = add.s(1, 2).on_success(multiply.s(10)).on_success(add.si(0, 0))
    canvas = canvas.on_error(xsum.s()).on_error(add.si(7, 7))
    message = _first_step(canvas)

    ok = followups(message, success_state(message, 3, []), app.codec)
    called = [o.message for o in ok.tasks.messages]
    assert [(m.task, m.args) for m in called] == [
        ("tasks.multiply", [3, 10]),
        ("tasks.add", [0, 0]),
    ]
    assert all(m.parent_id == message.id and m.root_id == message.id for m in called)
    assert ok.states == []

    failed = followups(message, failure_state(message.id, ValueError("x")), app.codec)
    called = [o.message for o in failed.tasks.messages]
    # Old-style errbacks: the failed task's id comes first, unless immutable.
    assert [(m.task, m.args) for m in called] == [
        ("tasks.xsum", [message.id]),
        ("tasks.add", [7, 7]),
    ]
    assert all(m.parent_id == message.id for m in called)
    assert failed.states == []


def test_errbacks_and_remaining_steps_together() -> None:
    first = _first_step(add.s(1, 1).on_error(add.si(0, 0)) | add.s(2))
    todo = followups(first, failure_state(first.id, ValueError("x")), app.codec)
    assert [o.message.args for o in todo.tasks.messages] == [[0, 0]]
    assert set(_states(todo.states)) == {"id2"}


def test_followup_of_a_group_member_is_nothing() -> None:
    member = messages(frozen(group(add.s(1, 1), add.s(2, 2))))[0]
    todo = followups(member, success_state(member, 2, []), app.codec)
    assert todo.tasks.messages == [] and todo.states == []
