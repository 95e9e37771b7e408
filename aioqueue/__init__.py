"""aioqueue: an asyncio-native distributed task queue over RabbitMQ, Celery-compatible.

The package is layered; a module imports only modules of the layers above it:

1. vocabulary: ``exceptions``, ``message`` (the protocol v2 wire models),
   ``serialization``, ``config``, ``options``;
2. transport: ``transport/`` (``base`` interface, ``memory``, ``amqp``: the only
   module importing the AMQP library, aiormq);
3. pure domain: ``topology`` (what is declared, every broker name), ``routing``
   (options -> a route), ``results/base``, ``result``, ``canvas``, ``task``,
   ``registry``, ``builtins``;
4. the broker layer: ``broker`` (the one publish path), ``results/rpc``;
5. runtimes: ``worker/`` (depends on the broker layer and the registry only);
6. composition: ``app``; edges: ``cli``.

This file only gathers the public names.
"""

from __future__ import annotations

from ._version import __version__ as __version__
from .app import App as App
from .canvas import Chain as Chain
from .canvas import Chord as Chord
from .canvas import Chunks as Chunks
from .canvas import Group as Group
from .canvas import Signature as Signature
from .canvas import chain as chain
from .canvas import chord as chord
from .canvas import group as group
from .config import TLS as TLS
from .control import Control as Control
from .exceptions import AioQueueError as AioQueueError
from .exceptions import ArgumentsError as ArgumentsError
from .exceptions import BrokerConnectionError as BrokerConnectionError
from .exceptions import BrokerError as BrokerError
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import ContentTypeError as ContentTypeError
from .exceptions import DeclarationConflictError as DeclarationConflictError
from .exceptions import DecodeError as DecodeError
from .exceptions import EncodeError as EncodeError
from .exceptions import MalformedMessageError as MalformedMessageError
from .exceptions import MaxRetriesExceededError as MaxRetriesExceededError
from .exceptions import MessageError as MessageError
from .exceptions import PartialPublishError as PartialPublishError
from .exceptions import PreconditionFailedError as PreconditionFailedError
from .exceptions import PublishError as PublishError
from .exceptions import ResultNotSentError as ResultNotSentError
from .exceptions import ResultTimeoutError as ResultTimeoutError
from .exceptions import Retry as Retry
from .exceptions import SoftTimeLimitExceeded as SoftTimeLimitExceeded
from .exceptions import TaskError as TaskError
from .exceptions import TaskExpiredError as TaskExpiredError
from .exceptions import TaskRevokedError as TaskRevokedError
from .exceptions import TimeLimitExceeded as TimeLimitExceeded
from .exceptions import UnknownTaskError as UnknownTaskError
from .exceptions import UnroutableError as UnroutableError
from .message import State as State
from .options import Options as Options
from .request import Request as Request
from .request import current_request as current_request
from .result import AsyncResult as AsyncResult
from .result import GroupResult as GroupResult
from .retries import RetryPolicy as RetryPolicy
from .task import Task as Task
from .topology import Binding as Binding
from .topology import Broadcast as Broadcast
from .topology import Exchange as Exchange
from .topology import Queue as Queue
from .worker import Worker as Worker

__all__ = (
    "AioQueueError",
    "App",
    "ArgumentsError",
    "AsyncResult",
    "Binding",
    "Broadcast",
    "BrokerConnectionError",
    "BrokerError",
    "Chain",
    "Chord",
    "Chunks",
    "ConfigurationError",
    "ContentTypeError",
    "Control",
    "DeclarationConflictError",
    "DecodeError",
    "EncodeError",
    "Exchange",
    "Group",
    "GroupResult",
    "MalformedMessageError",
    "MaxRetriesExceededError",
    "MessageError",
    "Options",
    "PartialPublishError",
    "PreconditionFailedError",
    "PublishError",
    "Queue",
    "Request",
    "ResultNotSentError",
    "ResultTimeoutError",
    "Retry",
    "RetryPolicy",
    "Signature",
    "SoftTimeLimitExceeded",
    "State",
    "TLS",
    "Task",
    "TaskError",
    "TaskExpiredError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "UnknownTaskError",
    "UnroutableError",
    "Worker",
    "__version__",
    "chain",
    "chord",
    "current_request",
    "group",
)
