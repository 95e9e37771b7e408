"""``task_routes`` in Celery's shapes, and the precedence call > task > routes > default."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aioqueue.exceptions import ConfigurationError
from aioqueue.options import Options
from aioqueue.routing import Route, Routes, TaskRoutes, resolve
from aioqueue.topology import Exchange, Queue, Topology


def media_router(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> Any:
    """A Celery-style router: decides by name and by arguments."""
    if name.startswith("media."):
        return {"queue": "big" if kwargs.get("size", 0) > 100 else "media"}
    return None


class ClassRouter:
    """Celery's older router shape: a class with route_for_task."""

    def route_for_task(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> Any:
        return "classy" if name == "classy.task" else None


MAPPING = {
    "feed.fetch": {"queue": "feeds-exact"},
    "feed.*": {"queue": "feeds"},
    re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"},
    "web.?": "web",  # a string value is a queue name
    "orders.place": {"exchange": "orders", "routing_key": "orders.created", "priority": 3},
}


@pytest.mark.parametrize(
    ("routes", "task", "kwargs", "queue"),
    [
        (MAPPING, "feed.fetch", {}, "feeds-exact"),  # exact names before patterns
        (MAPPING, "feed.parse", {}, "feeds"),
        (MAPPING, "feedx", {}, None),
        (MAPPING, "image.tasks.resize", {}, "media"),
        (MAPPING, "audio.tasks.resize", {}, None),
        (MAPPING, "web.a", {}, "web"),
        (MAPPING, "web.ab", {}, None),
        # A sequence of (pattern, route) pairs: patterns in order, the first match wins
        # (exact names still come first, as in Celery).
        ([("a.*", {"queue": "first"}), ("a.?", {"queue": "second"})], "a.b", {}, "first"),
        ([("a.*", {"queue": "pattern"}), ("a.b", {"queue": "exact"})], "a.b", {}, "exact"),
        # A router callable, which sees the arguments.
        (media_router, "media.encode", {"size": 500}, "big"),
        (media_router, "media.encode", {"size": 5}, "media"),
        (media_router, "other", {}, None),
        # A list of these, tried in order; a router with no opinion passes.
        ([media_router, {"other": {"queue": "mapped"}}], "other", {}, "mapped"),
        ([{"media.encode": "mapped"}, media_router], "media.encode", {}, "mapped"),
        # An import path of a router (a function, or a class with route_for_task).
        ("tests.unit.test_task_routes.media_router", "media.x", {}, "media"),
        (["tests.unit.test_task_routes:ClassRouter"], "classy.task", {}, "classy"),
        (None, "anything", {}, None),
    ],
)
def test_celery_shapes(
    routes: TaskRoutes, task: str, kwargs: dict[str, Any], queue: str | None
) -> None:
    found = Routes(routes).match(task, (), kwargs)
    assert (found.queue if found is not None else None) == queue


ORDERS = Exchange("orders", "topic")
CREATED = Queue("created", exchange=ORDERS, routing_key="orders.created")
TOPOLOGY = Topology([CREATED], "celery")
ROUTES = Routes(
    {
        "t.routed": {"queue": "from-routes", "priority": 1},
        "orders.place": {"exchange": "orders", "routing_key": "orders.created"},
    }
)


@pytest.mark.parametrize(
    ("task_options", "call", "task", "route"),
    [
        # Nothing set anywhere: the default queue.
        (Options(), Options(), "t.plain", Route("", "celery", (Queue("celery"),))),
        # task_routes below everything else.
        (Options(), Options(), "t.routed", Route("", "from-routes", (Queue("from-routes"),))),
        # The task's queue beats task_routes...
        (Options(queue="task-q"), Options(), "t.routed", Route("", "task-q", (Queue("task-q"),))),
        # ...and the call's beats the task's.
        (
            Options(queue="task-q"),
            Options(queue="call-q"),
            "t.routed",
            Route("", "call-q", (Queue("call-q"),)),
        ),
        # A route to an exchange; a call's queue replaces that destination as a whole.
        (
            Options(),
            Options(),
            "orders.place",
            Route("orders", "orders.created", (ORDERS, CREATED)),
        ),
        (Options(), Options(queue="q"), "orders.place", Route("", "q", (Queue("q"),))),
        # A call's routing key alone keeps the route's exchange.
        (
            Options(),
            Options(routing_key="orders.cancelled"),
            "orders.place",
            Route("orders", "orders.cancelled", (ORDERS, CREATED)),
        ),
        # The task's exchange, and a call's queue replacing it.
        (
            Options(exchange="orders", routing_key="orders.created"),
            Options(queue="q"),
            "t.plain",
            Route("", "q", (Queue("q"),)),
        ),
    ],
)
def test_precedence(task_options: Options, call: Options, task: str, route: Route) -> None:
    options = task_options.merged(call)
    assert resolve(options, TOPOLOGY, task=task, routes=ROUTES) == route


def test_route_options_other_than_the_destination_apply_below_the_call() -> None:
    routed = ROUTES.match("t.routed")
    assert routed is not None and routed.priority == 1
    assert routed.merged(Options(priority=9)).priority == 9
    assert routed.merged(Options(queue="x")).priority == 1


@pytest.mark.parametrize(
    ("routes", "error"),
    [
        ({"t": {"queu": "x"}}, "unknown route key(s) queu"),
        ({"t": 5}, "a route is a mapping or a queue name"),
        ({5: "x"}, "a key must be a task name"),
        (42, "expected a mapping"),
        ("no.such.module.router", "cannot import router"),
        ({"t": {"priority": 900}}, "priority must be 0-255"),
    ],
)
def test_bad_routes_name_the_problem(routes: Any, error: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(error)):
        Routes(routes)


def test_a_router_returning_nonsense_names_it() -> None:
    routes = Routes(lambda *args: 42)
    with pytest.raises(ConfigurationError, match="router .* a route is a mapping"):
        routes.match("t")


def test_static_routes_are_looked_up_once_per_name() -> None:
    routes = Routes({"t.*": "q"})
    first = routes.match("t.a")
    assert routes.match("t.a") is first
