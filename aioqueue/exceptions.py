"""The aioqueue error tree.

Every error aioqueue raises derives from :class:`AioQueueError`::

    AioQueueError
    ├── ConfigurationError            bad URL, unknown scheme, invalid option
    ├── BrokerError                   the broker refused or lost something
    │   ├── BrokerConnectionError     (also ConnectionError) cannot reach / lost the broker
    │   ├── PreconditionFailedError   a declaration conflicts with what the broker has
    │   │   └── DeclarationConflictError  names what the app wants and what exists
    │   └── PublishError              a publish was not confirmed (nack, returned, closed)
    │       ├── UnroutableError       a mandatory publish that no queue was bound to receive
    │       └── PartialPublishError   some messages of a canvas were sent, others not
    ├── MessageError                  a message that cannot be processed (dead-lettered)
    │   ├── DecodeError               body is not valid for its content type
    │   ├── ContentTypeError          content type not accepted (pickle unless enabled, ...)
    │   ├── MalformedMessageError     decodes, but is not a protocol v2 task message
    │   ├── UnknownTaskError          no task registered under that name
    │   └── ArgumentsError            (also TypeError) args/kwargs do not fit the task
    ├── EncodeError                   a value cannot be serialised (a task's result, arguments)
    ├── ResultTimeoutError            (also TimeoutError) a result did not arrive in time
    ├── ResultNotSentError            a chain's earlier step, sent without its result
    ├── TaskError                     a task failed remotely and its exception cannot be rebuilt
    ├── TaskRevokedError              a task was revoked before it ran
    │   └── TaskExpiredError          a task reached a worker after its expiry time
    ├── Retry                         raised in a task to run it again later
    ├── MaxRetriesExceededError       a task asked to retry past its max_retries
    ├── SoftTimeLimitExceeded         raised in an async task past its soft time limit
    └── TimeLimitExceeded             (also TimeoutError) a task ran past its hard time limit

The exceptions a user's task raises are never wrapped on the worker: they travel as
Celery's ``exc_type``/``exc_message``/``exc_module`` and, on the caller, are raised again
as the same type when that type is allowed (see ``App(exception_modules=...)``), else as
:class:`TaskError`.
"""

from __future__ import annotations

from datetime import datetime

__all__ = (
    "AioQueueError",
    "ArgumentsError",
    "BrokerConnectionError",
    "BrokerError",
    "ConfigurationError",
    "ContentTypeError",
    "DeclarationConflictError",
    "DecodeError",
    "EncodeError",
    "MalformedMessageError",
    "MaxRetriesExceededError",
    "MessageError",
    "PartialPublishError",
    "PreconditionFailedError",
    "PublishError",
    "ResultNotSentError",
    "ResultTimeoutError",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskExpiredError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "UnknownTaskError",
    "UnroutableError",
)


class AioQueueError(Exception):
    """Root of every error aioqueue raises.

    ``except aioqueue.AioQueueError`` catches all of them; task exceptions re-raised on
    the caller keep their own type.
    """


class ConfigurationError(AioQueueError):
    """Raised at construction when a URL, option or name is invalid."""


class BrokerError(AioQueueError):
    """Raised when the broker refuses an operation or a channel fails."""


class BrokerConnectionError(BrokerError, ConnectionError):
    """Raised when the broker cannot be reached, or the connection was lost for good."""


class PreconditionFailedError(BrokerError):
    """Raised when a declaration conflicts with what the broker has, e.g. a queue that
    exists with other arguments (RabbitMQ's PRECONDITION_FAILED)."""


class DeclarationConflictError(PreconditionFailedError):
    """Raised when a queue or exchange exists in the broker with other settings than the
    app's definition; it names both. A worker refuses to start on it; a client uses
    what exists, with a warning.

    :param kind: ``queue`` or ``exchange``.
    :param name: its name.
    :param wanted: what the app's definition asks for.
    :param broker: the broker's refusal, which says what it has.
    """

    def __init__(self, kind: str, name: str, wanted: str, broker: BaseException) -> None:
        self.kind = kind
        self.name = name
        self.wanted = wanted
        super().__init__(
            f"{kind} {name!r} exists in the broker with other settings: the app wants "
            f"{wanted}; the broker says: {broker}"
        )


class PublishError(BrokerError):
    """Raised when the broker did not confirm a publish (nack, unroutable, channel closed)."""


class UnroutableError(PublishError):
    """Raised by a ``mandatory`` publish that the broker returned because no queue is
    bound to receive it (RabbitMQ's basic.return with NO_ROUTE).

    :param exchange: the exchange it was published to; ``""`` is the default exchange.
    :param routing_key: its routing key.
    """

    def __init__(self, exchange: str, routing_key: str) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        target = f"exchange {exchange!r}" if exchange else "the default exchange"
        super().__init__(
            f"message to {target} with routing key {routing_key!r} is unroutable: "
            "no queue is bound to receive it"
        )

    def __reduce__(self) -> tuple[type[UnroutableError], tuple[str, str]]:
        # The default rebuilds from ``args`` (the message), which __init__ does not take.
        return (type(self), (self.exchange, self.routing_key))


class PartialPublishError(PublishError):
    """Raised when a group (or chord header) was published only in part.

    Every publish was awaited to its end before this is raised, so nothing is left in
    flight: :attr:`sent` holds the ids of the task messages the broker confirmed,
    :attr:`failed` the ids that were not sent, each with its error.
    """

    def __init__(self, sent: list[str], failed: dict[str, BrokerError]) -> None:
        self.sent = sent
        self.failed = failed
        first = next(iter(failed.values()))
        super().__init__(
            f"{len(failed)} of {len(sent) + len(failed)} messages were not sent "
            f"(first error: {first}); sent: {', '.join(sent) or 'none'}"
        )


class MessageError(AioQueueError):
    """Raised (and the message dead-lettered) when a delivery cannot be processed."""


class DecodeError(MessageError):
    """Raised when a message body is not valid for its declared content type."""


class ContentTypeError(MessageError):
    """Raised when a message's content type is not accepted (pickle unless enabled)."""


class MalformedMessageError(MessageError):
    """Raised when a message decodes but is not a Celery protocol v2 task message."""


class UnknownTaskError(MessageError):
    """Raised when a message names a task that is not registered on this worker."""


class ArgumentsError(MessageError, TypeError):
    """Raised when a message's args/kwargs do not fit the task's signature."""


class EncodeError(AioQueueError):
    """Raised when a value (a task's arguments or result) cannot be serialised."""


class ResultTimeoutError(AioQueueError, TimeoutError):
    """Raised by ``AsyncResult.get(timeout=...)`` when no final state arrived in time."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id} did not finish within {timeout:g} s")
        self.task_id = task_id
        self.timeout = timeout


class ResultNotSentError(AioQueueError):
    """Raised by ``AsyncResult.get()``/``status()`` for a chain's step before its last
    when the chain was sent without ``intermediate_results``: no worker sends that
    result, so waiting for it would wait forever."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id} is an earlier step of a chain, and no worker sends it a "
            "result: send the chain with apply_async(intermediate_results=True), or "
            "create the app with App(intermediate_results=True), to read it"
        )
        self.task_id = task_id


class TaskError(AioQueueError):
    """Raised on the caller for a remote failure whose exception type cannot be rebuilt.

    :param exc_type: the remote exception's type name, e.g. ``"CustomError"``.
    :param exc_module: the module that defined it, e.g. ``"myapp.errors"``.
    :param message: ``str()`` of the remote exception.
    :param remote_traceback: the formatted traceback from the worker, or ``None``.
    """

    def __init__(
        self,
        exc_type: str,
        message: str,
        *,
        exc_module: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.message = message
        self.remote_traceback = remote_traceback


class TaskRevokedError(AioQueueError):
    """Raised on the caller when the task expired or was revoked before it ran."""


class TaskExpiredError(TaskRevokedError):
    """Raised on the caller when the task reached a worker after its ``expires`` time
    (it was not run)."""


class Retry(AioQueueError):
    """What ``raise task.retry(...)`` raises inside a task: the worker sends the task
    again later (same id, ``retries`` + 1) instead of failing it.

    :param when: seconds from now, or the time, of the next attempt.
    :param exc: the error that made the task retry, if any.
    """

    def __init__(self, when: float | datetime, exc: BaseException | None = None) -> None:
        self.when = when
        self.exc = exc
        shown = f"in {when:g}s" if isinstance(when, int | float) else f"at {when.isoformat()}"
        super().__init__(f"Retry {shown}" + (f": {exc!r}" if exc is not None else ""))


class MaxRetriesExceededError(AioQueueError):
    """Raised in a task that asked to retry past its ``max_retries`` without naming the
    error it retried for (with one, that error is raised instead, as in Celery)."""


class SoftTimeLimitExceeded(AioQueueError):
    """Raised inside an async task when it runs past its soft time limit; a task may
    catch it to clean up before the hard limit."""


class TimeLimitExceeded(AioQueueError, TimeoutError):
    """Raised in a task (and re-raised on its caller) when it ran past its hard time limit.

    A sync task's thread cannot be interrupted: the worker stops waiting for it and
    reports the failure, but the thread runs on until the function returns.
    """
