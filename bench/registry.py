"""One generic registry for shifts, detectors, datasets and models, plus the spec parser.

A component is named on the command line by a spec string::

    name                      msp
    name(key=value, ...)      fgsm(eps=4/255), gaussian_noise(severity=5)
    prefix:ARG[(key=...)]     npz:/data/ood/tin.npz(exclude=cifar10_overlap), albu:Blur(blur_limit=7)

Values are Python literals, simple arithmetic on numbers (``4/255``), or bare words (taken as
strings). Nothing is evaluated. ``key=a..b`` (integers) is a sweep that :func:`expand` turns into
one spec per value.

Built-ins register with :meth:`Registry.register`; third-party plugins come through the
entry-point groups ``bench.attacks``, ``bench.detectors``, ``bench.datasets`` and ``bench.models``,
listed without importing them and imported when first asked for. A plugin never replaces a
built-in: a clash is reported with the plugin's distribution name.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import logging
import operator
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Generic, Iterator, TypeVar

from bench.errors import BenchError, did_you_mean

log = logging.getLogger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """``key=a..b`` in a spec: one run per integer in [a, b]."""

    values: tuple[int, ...]


@dataclass(frozen=True)
class Spec:
    """A parsed component spec: ``name``, optional ``arg`` after ``:``, keyword ``params``."""

    name: str
    arg: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        head = self.name if self.arg is None else f"{self.name}:{self.arg}"
        if not self.params:
            return head
        return f"{head}({', '.join(f'{k}={format_value(v)}' for k, v in self.params.items())})"


def format_value(v: Any) -> str:
    if isinstance(v, Sweep):
        return f"{v.values[0]}..{v.values[-1]}"
    if isinstance(v, float):
        # 4/255 prints as a short, exact-enough literal that parses back to the same float
        return repr(v)
    if isinstance(v, str):
        return v if re.fullmatch(r"[A-Za-z_][\w.\-/]*", v) else repr(v)
    return repr(v)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name):  # bare word -> string (exclude=cifar10_overlap)
        return {"true": True, "false": False, "none": None}.get(node.id.lower(), node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, text)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _literal(node.left, text), _literal(node.right, text)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            if isinstance(node.op, ast.Div) and b == 0:
                raise BenchError(f"division by zero in spec {text!r}")
            if isinstance(node.op, ast.Pow) and abs(b) > 64:
                raise BenchError(f"exponent too large in spec {text!r}")
            return _BINOPS[type(node.op)](a, b)
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, text) for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__sweep__":
        lo, hi = (_literal(a, text) for a in node.args)
        if not (isinstance(lo, int) and isinstance(hi, int)) or hi < lo:
            raise BenchError(f"bad range in spec {text!r}: write key=LOW..HIGH with integers")
        return Sweep(tuple(range(lo, hi + 1)))
    raise BenchError(f"cannot read a value in spec {text!r}: use numbers, strings, True/False, a/b")


_NAME = re.compile(r"[A-Za-z_][\w\-]*")
#: an unquoted value that looks like a file path (``weights=models/r18.pt``, ``~/w.pt``)
_PATH_VALUE = re.compile(r"(=\s*)([~./\w\-+]+)(?=\s*(?:,|$))")


def _quote_path(m: re.Match[str]) -> str:
    tok = m.group(2)
    # digits-only values stay numbers (eps=8/255, 1..3 sweeps); 1e-3 parses as a float
    if ("/" in tok or "." in tok or tok.startswith("~")) and re.search(r"[A-Za-z~_]", tok):
        try:
            float(tok)
        except ValueError:
            return m.group(1) + repr(tok)
    return m.group(0)


def parse_spec(text: str) -> Spec:
    """Parse ``name``, ``name(k=v, ...)`` or ``name:ARG(k=v, ...)`` safely (no eval)."""
    s = text.strip()
    if not s:
        raise BenchError("empty component spec")
    params: dict[str, Any] = {}
    head = s
    if s.endswith(")"):
        depth, open_at = 0, -1
        for i in range(len(s) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(s[i], 0)
            if depth == 0:
                open_at = i
                break
        if open_at <= 0:
            raise BenchError(f"malformed spec {text!r}: unbalanced parentheses")
        head, body = s[:open_at].strip(), s[open_at + 1:-1]
        body = _PATH_VALUE.sub(_quote_path, body)
        body = re.sub(r"(-?\d+)\s*\.\.\s*(-?\d+)", r"__sweep__(\1, \2)", body)
        try:
            call = ast.parse(f"f({body})", mode="eval").body
        except SyntaxError:
            raise BenchError(f"malformed spec {text!r}: write name(key=value, ...)") from None
        assert isinstance(call, ast.Call)
        if call.args:
            raise BenchError(f"malformed spec {text!r}: parameters need names, e.g. eps=8/255")
        for kw in call.keywords:
            if kw.arg is None:
                raise BenchError(f"malformed spec {text!r}: ** is not allowed")
            params[kw.arg] = _literal(kw.value, text)
    elif "(" in s or ")" in s:
        raise BenchError(f"malformed spec {text!r}: unbalanced parentheses")
    name, sep, arg = head.partition(":")
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise BenchError(f"malformed spec {text!r}: {name!r} is not a component name")
    if sep and not arg.strip():
        raise BenchError(f"malformed spec {text!r}: nothing after '{name}:'")
    return Spec(name, arg.strip() if sep else None, params)


def split_specs(text: str) -> list[str]:
    """Split ``a,b(x=1, y=2),c`` at top-level commas."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    if depth != 0:
        raise BenchError(f"malformed list {text!r}: unbalanced parentheses")
    if any(not p for p in out):
        raise BenchError(f"malformed list {text!r}: empty entry between commas")
    return out


def expand(spec: Spec) -> list[Spec]:
    """One spec per combination of the sweeps (``severity=1..5``) in ``spec``."""
    specs = [spec]
    for key, value in spec.params.items():
        if isinstance(value, Sweep):
            specs = [Spec(s.name, s.arg, {**s.params, key: v}) for s in specs for v in value.values]
    return specs


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------
class Component:
    """Base of everything registered: ``__init__`` stores keyword hyper-parameters as attributes.

    ``get_params`` returns them (sklearn style), so a component's record is exactly its
    constructor arguments with defaults resolved.
    """

    name: ClassVar[str] = ""
    #: set for ``prefix:ARG`` components: the constructor's first positional argument gets ARG
    takes_arg: ClassVar[bool] = False
    #: left out of ``all`` (``--attack all``, ``--detector all``); still usable by name
    hidden: ClassVar[bool] = False
    #: parameters the run supplies, not the user: kept in records, left out of spec labels
    context_params: ClassVar[frozenset[str]] = frozenset({"device", "data_root", "seed",
                                                          "pixel_step"})

    @classmethod
    def severity_keys(cls) -> tuple[str, ...]:
        """The parameters a ``severity`` sets; none for components without severity tables."""
        return ()

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names() if hasattr(self, k)}

    def changed_params(self) -> dict[str, Any]:
        """Parameters whose value differs from the constructor default (for short labels)."""
        defaults = signature_params(type(self))
        return {k: v for k, v in self.get_params().items()
                if k != "arg" and k not in self.context_params
                and (k not in defaults or defaults[k] != v)}

    def spec(self) -> str:
        """``name(k=v, ...)`` with the non-default parameters; records also keep all of them."""
        return str(Spec(self.name, getattr(self, "arg", None) if self.takes_arg else None,
                        self.changed_params()))


@dataclass
class _Entry:
    name: str
    obj: Any = None               # the class, once imported
    entry_point: Any = None       # importlib.metadata.EntryPoint for plugins not yet imported
    dist: str | None = None       # distribution that provided a plugin


class Registry(Generic[T]):
    """Name -> class table with decorator registration, lazy entry points and helpful errors."""

    def __init__(self, kind: str, group: str, builtin_package: str | None = None):
        self.kind = kind                      # "shift", "detector", ...
        self.group = group                    # entry-point group
        self.builtin_package = builtin_package
        self._entries: dict[str, _Entry] = {}
        self._builtins_loaded = False
        self._plugins_listed = False
        self.problems: list[str] = []         # plugin clashes and import failures, for `bench list`

    # registration ---------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            key = name or getattr(cls, "name", "") or cls.__name__.lower()
            existing = self._entries.get(key)
            if existing is not None and existing.obj is not None and existing.obj is not cls:
                raise BenchError(f"{self.kind} {key!r} is registered twice "
                                 f"({_where(existing.obj)} and {_where(cls)})")
            cls.name = key  # type: ignore[attr-defined]
            self._entries[key] = _Entry(key, obj=cls)
            return cls
        return deco

    def set_origin(self, name: str, origin: str) -> None:
        """Say where a registered component came from (e.g. ``file plugins/x.py``), for
        `bench list` and the records' ``dist`` field."""
        self._entries[name].dist = origin

    def add(self, name: str, cls: type[T]) -> type[T]:
        return self.register(name)(cls)

    # loading --------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded or self.builtin_package is None:
            self._builtins_loaded = True
            return
        self._builtins_loaded = True
        pkg = importlib.import_module(self.builtin_package)
        for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not mod.name.startswith("_") and mod.name != "base":
                importlib.import_module(f"{self.builtin_package}.{mod.name}")

    def _list_plugins(self) -> None:
        if self._plugins_listed:
            return
        self._plugins_listed = True
        self._load_builtins()
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
            if ep.name in self._entries:
                owner = self._entries[ep.name]
                if owner.entry_point is not None and owner.entry_point.value == ep.value:
                    continue  # the same distribution seen twice on sys.path
                msg = (f"plugin {self.kind} {ep.name!r} from {dist} ({ep.value}) clashes with "
                       f"{'a built-in' if owner.dist is None else owner.dist}; ignored — rename it")
                self.problems.append(msg)
                log.warning(msg)
                continue
            self._entries[ep.name] = _Entry(ep.name, entry_point=ep, dist=dist)

    def _resolve(self, entry: _Entry) -> Any:
        if entry.obj is None:
            ep = entry.entry_point
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the suite down
                del self._entries[entry.name]
                msg = (f"plugin {self.kind} {entry.name!r} from {entry.dist} ({ep.value}) failed "
                       f"to import: {type(exc).__name__}: {exc}")
                self.problems.append(msg)
                raise BenchError(msg) from None
            if inspect.isclass(obj):
                obj.name = entry.name
            entry.obj = obj
        return entry.obj

    # lookup ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._list_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._list_plugins()
        return name in self._entries

    def get(self, name: str) -> type[T]:
        self._list_plugins()
        entry = self._entries.get(name)
        if entry is None:
            raise BenchError(self._unknown(name))
        return self._resolve(entry)

    def dist_of(self, name: str) -> str | None:
        self._list_plugins()
        e = self._entries.get(name)
        return e.dist if e else None

    def _unknown(self, name: str) -> str:
        names = sorted(self._entries)
        hint = did_you_mean(name, names)
        return f"unknown {self.kind} {name!r}{hint} (choose from: {', '.join(names)})"

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            try:
                yield name, self.get(name)
            except BenchError:
                continue

    def create(self, spec: str | Spec, **context: Any) -> T:
        """Instantiate ``spec``; ``context`` adds keyword arguments the user does not type."""
        if isinstance(spec, str):
            spec = parse_spec(spec)
        cls = self.get(spec.name)
        takes_arg = getattr(cls, "takes_arg", False)
        if takes_arg and spec.arg is None:
            raise BenchError(f"{self.kind} {spec.name!r} needs an argument: {spec.name}:VALUE")
        if not takes_arg and spec.arg is not None:
            raise BenchError(f"{self.kind} {spec.name!r} takes no ':' argument (got {str(spec)!r})")
        for key, value in spec.params.items():
            if isinstance(value, Sweep):
                raise BenchError(f"{spec} holds a range; a range is expanded into separate runs")
        allowed = cls.param_names() if hasattr(cls, "param_names") else None
        if allowed is not None and not _has_var_kw(cls):
            bad = [k for k in spec.params if k not in allowed or k == "arg"]
            if bad:
                valid = ", ".join(a for a in allowed if a != "arg") or "none"
                raise BenchError(f"{self.kind} {spec.name!r} has no parameter {bad[0]!r} "
                                 f"(parameters: {valid})")
        # context (device, data_root) goes only to constructors that name it
        kwargs = {**{k: v for k, v in context.items() if allowed is not None and k in allowed},
                  **spec.params}
        try:
            return cls(spec.arg, **kwargs) if takes_arg else cls(**kwargs)
        except BenchError:
            raise
        except (TypeError, ValueError) as exc:
            raise BenchError(f"{spec}: {exc}") from None


def _has_var_kw(cls: Any) -> bool:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def summary(cls: Any) -> str:
    """A component's one-line description: the first paragraph of its docstring on one line,
    without reST literal quotes (a summary that runs over two source lines is not cut)."""
    doc = (inspect.getdoc(cls) or "").strip()
    if not doc:
        return ""
    first = doc.split("\n\n", 1)[0]
    return " ".join(first.split()).replace("``", "")


def signature_params(cls: Any) -> dict[str, Any]:
    """Parameter name -> default, for `bench list`."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return {}
    return {p.name: (None if p.default is p.empty else p.default)
            for p in sig.parameters.values()
            if p.name not in ("self", "arg") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


SHIFTS: Registry = Registry("shift", "bench.attacks", "bench.attacks")
DETECTORS: Registry = Registry("detector", "bench.detectors", "bench.detectors")
DATASETS: Registry = Registry("dataset", "bench.datasets", "bench.datasets")
MODELS: Registry = Registry("model", "bench.models", "bench.models")
