"""The sans-I/O protocol layer: codec, JSON-RPC messages, method parameters.

Nothing here does I/O, awaits or touches SQLite. A transport feeds bytes to a
decoder (:class:`LineDecoder`, :func:`decode_msgpack`, :func:`decode_json_text`),
checks each decoded value with :func:`parse_message`, checks a request's params
with :func:`parse_params` (or one ``parse_*`` function), and encodes replies
built with :func:`result_message` / :func:`error_message` with
:func:`encode_json_line` or :func:`encode_msgpack`.
"""

from __future__ import annotations

from . import codec, messages, methods
from .codec import *  # noqa: F403
from .messages import *  # noqa: F403
from .methods import *  # noqa: F403

__all__ = [*codec.__all__, *messages.__all__, *methods.__all__]
