"""Limits on staff-authored Liquid templates, so no template can eat a web request or a worker.

python-liquid enforces loop iterations, output size, the size of assigned variables and the
context depth itself (Environment options). Added here, for what it leaves open:
- range size: `(1..10000000) | join` builds a huge string without any loop;
- nesting depth, refused when parsing: 200 nested `if` tags overflow Python's stack;
- the size of every filter's result, projected before the call for the filters that can
  grow their input (`replace`, `join`…) and checked after every call: python-liquid checks
  output only when it is written, after a filter chain built it (messaging.filter_limits);
- wall-clock time, checked cooperatively (on every variable lookup, filter, loop and write),
  not with threads or signals, which web and worker processes cannot safely use.

Every limit is a setting (TEMPLATE_MAX_*), and every refusal names the limit it hit.
"""

from __future__ import annotations

import time
from functools import lru_cache
from io import StringIO
from typing import Any

from django.conf import settings
from liquid import BoundTemplate, Environment, RenderContext
from liquid.ast import BlockNode, ConditionalBlockNode, Node
from liquid.builtin.expressions.primitive import RangeLiteral
from liquid.builtin.tags.liquid_tag import LiquidNode
from liquid.exceptions import (
    ContextDepthError,
    LiquidSyntaxError,
    LocalNamespaceLimitError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
)
from liquid.output import LimitedStringIO
from liquid.token import TOKEN_TAG

from .filter_limits import FilterResultLimitError, bounded


class RangeSizeLimitError(ResourceLimitError):
    """A range literal, e.g. `(1..n)`, longer than TEMPLATE_MAX_RANGE_SIZE."""


class RenderTimeLimitError(ResourceLimitError):
    """Rendering took longer than TEMPLATE_MAX_RENDER_SECONDS."""


class NestingDepthError(LiquidSyntaxError):
    """Block tags nested deeper than TEMPLATE_MAX_NESTING_DEPTH."""


_SETTINGS = (
    "TEMPLATE_MAX_LOOP_ITERATIONS",
    "TEMPLATE_MAX_RANGE_SIZE",
    "TEMPLATE_MAX_OUTPUT_BYTES",
    "TEMPLATE_MAX_LOCALS_BYTES",
    "TEMPLATE_MAX_CONTEXT_DEPTH",
    "TEMPLATE_MAX_NESTING_DEPTH",
    "TEMPLATE_MAX_RENDER_SECONDS",
)

# (what was hit, setting, what the setting allows); the first matching class wins.
_MESSAGES: tuple[tuple[tuple[type[BaseException], ...], str, str], ...] = (
    (
        (LoopIterationLimitError,),
        "TEMPLATE_MAX_LOOP_ITERATIONS",
        "loop iteration limit reached: at most {} iterations in all loops together",
    ),
    (
        (RangeSizeLimitError,),
        "TEMPLATE_MAX_RANGE_SIZE",
        "range size limit reached: a range may have at most {} items",
    ),
    (
        (FilterResultLimitError,),
        "TEMPLATE_MAX_OUTPUT_BYTES",
        "output size limit reached: a filter's result may be at most {} characters or items",
    ),
    (
        (OutputStreamLimitError,),
        "TEMPLATE_MAX_OUTPUT_BYTES",
        "output size limit reached: at most {} bytes of output",
    ),
    (
        (LocalNamespaceLimitError,),
        "TEMPLATE_MAX_LOCALS_BYTES",
        "variable size limit reached: assigned variables may hold at most {} bytes",
    ),
    (
        (ContextDepthError,),
        "TEMPLATE_MAX_CONTEXT_DEPTH",
        "context depth limit reached: at most {} levels",
    ),
    (
        (NestingDepthError, RecursionError),
        "TEMPLATE_MAX_NESTING_DEPTH",
        "nesting depth limit reached: tags may be nested at most {} levels deep",
    ),
    (
        (RenderTimeLimitError,),
        "TEMPLATE_MAX_RENDER_SECONDS",
        "render time limit reached: rendering may take at most {:g} s",
    ),
)


def _limits() -> tuple[Any, ...]:
    return tuple(getattr(settings, name) for name in _SETTINGS)


class LimitMessage(str):
    """An error message about a limit (callers answering HTTP make these a 400)."""

    __slots__ = ()


def limit_message(exc: BaseException) -> str | None:
    """What a refusal says when `exc` is a limit: the limit, its value and its setting."""
    for classes, setting, text in _MESSAGES:
        if isinstance(exc, classes):
            return f"{text.format(getattr(settings, setting))} ({setting})"
    return None


# --- Rendering under a deadline --------------------------------------------------------


class _DeadlineBuffer(LimitedStringIO):
    """The output stream limit, plus the deadline checked on every write."""

    def __init__(self, limit: int, deadline: float) -> None:
        super().__init__(limit=limit)
        self.deadline = deadline

    def write(self, s: str) -> int:
        _check_deadline(self.deadline)
        return super().write(s)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise RenderTimeLimitError("render time limit reached", token=None)


class _LimitedContext(RenderContext):
    __slots__ = ("deadline",)

    def __init__(self, template: BoundTemplate, **kwargs: Any) -> None:
        super().__init__(template, **kwargs)
        parent = kwargs.get("parent_context")
        self.deadline: float = (
            parent.deadline
            if isinstance(parent, _LimitedContext)
            else time.monotonic() + self.env.render_time_limit
        )

    def get_buffer(self, buf: Any = None) -> StringIO:
        _check_deadline(self.deadline)
        carry = buf.size if isinstance(buf, LimitedStringIO) else 0
        return _DeadlineBuffer(self.env.output_stream_limit - carry, self.deadline)

    def resolve(self, *args: Any, **kwargs: Any) -> Any:
        _check_deadline(self.deadline)
        return super().resolve(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        _check_deadline(self.deadline)
        return super().get(*args, **kwargs)

    def filter(self, name: str, token: Any) -> Any:
        # Every filter call is bounded by the output limit (messaging.filter_limits).
        _check_deadline(self.deadline)
        return bounded(super().filter(name, token), name, self.env.output_stream_limit, token)

    def raise_for_loop_limit(self, length: int = 1) -> None:
        _check_deadline(self.deadline)
        super().raise_for_loop_limit(length)


class _LimitedTemplate(BoundTemplate):
    context_class = _LimitedContext

    def render(self, *args: Any, **kwargs: Any) -> str:
        context = self.context_class(self, globals=self.make_globals(dict(*args, **kwargs)))
        buffer = context.get_buffer()
        self.render_with_context(context, buffer)
        return buffer.getvalue()


class _BoundedRange(RangeLiteral):
    """A range literal refusing to be longer than the environment's range size limit."""

    __slots__ = ()

    def evaluate(self, context: RenderContext) -> range:
        value = super().evaluate(context)
        if len(value) > context.env.range_size_limit:
            raise RangeSizeLimitError("range size limit reached", token=self.token)
        return value

    async def evaluate_async(self, context: RenderContext) -> range:
        return self.evaluate(context)


# --- The environment and parsing -------------------------------------------------------


# Nodes that hold other nodes without being a tag of their own (an `if`'s branches, the
# `liquid` tag's lines): they add no nesting level.
_WRAPPERS = (BlockNode, ConditionalBlockNode, LiquidNode)


class _LimitedEnvironment(Environment):
    template_class = _LimitedTemplate
    range_size_limit: int
    render_time_limit: float
    nesting_depth_limit: int


@lru_cache(maxsize=4)
def _environment(limits: tuple[Any, ...]) -> _LimitedEnvironment:
    loops, ranges, output, local, context, nesting, seconds = limits
    env_class = type(
        "StaffTemplateEnvironment",
        (_LimitedEnvironment,),
        {
            "loop_iteration_limit": loops,
            "output_stream_limit": output,
            "local_namespace_limit": local,
            "context_depth_limit": context,
            "range_size_limit": ranges,
            "render_time_limit": seconds,
            "nesting_depth_limit": nesting,
        },
    )
    return env_class()


def environment() -> _LimitedEnvironment:
    """The Liquid environment for staff-authored templates, with the configured limits."""
    return _environment(_limits())


def parse(source: str) -> BoundTemplate:
    """Parse `source` under the limits; raises LiquidError (NestingDepthError when too deep)."""
    env = environment()
    _check_tag_nesting(env, source)
    try:
        template = env.from_string(source)
    except RecursionError:
        raise NestingDepthError("nesting depth limit reached", token=None) from None
    _check_tree(env, template.nodes)
    return template


def _check_tag_nesting(env: _LimitedEnvironment, source: str) -> None:
    # Counted on tokens, before the (recursive) parser sees the template.
    openers = {name for name, tag in env.tags.items() if getattr(tag, "block", False)}
    closers = {f"end{name}" for name in openers}
    depth = 0
    for token in env.tokenizer()(source):
        if token.kind != TOKEN_TAG:
            continue
        if token.value in openers:
            depth += 1
            if depth > env.nesting_depth_limit:
                raise NestingDepthError("nesting depth limit reached", token=token)
        elif token.value in closers:
            depth -= 1


def _check_tree(env: _LimitedEnvironment, nodes: list[Node]) -> None:
    # Tags nested inside a `{% liquid %}` tag are only seen in the tree. Ranges become
    # bounded ones here, which is the one place every range literal of a template passes.
    stack: list[tuple[Node, int]] = [(node, 0) for node in nodes]
    while stack:
        node, enclosing = stack.pop()
        expressions = list(node.expressions())
        while expressions:
            expression = expressions.pop()
            if type(expression) is RangeLiteral:
                expression.__class__ = _BoundedRange
            expressions.extend(expression.children())
        children = list(node.children(None, include_partials=False))  # type: ignore[arg-type]
        if children and not isinstance(node, _WRAPPERS):
            enclosing += 1
            if enclosing > env.nesting_depth_limit:
                raise NestingDepthError("nesting depth limit reached", token=node.token)
        stack.extend((child, enclosing) for child in children)


def has_limit_error(errors: dict[str, list[str]]) -> bool:
    """Whether any of a form's error messages is about a limit."""
    return any(isinstance(m, LimitMessage) for messages in errors.values() for m in messages)
