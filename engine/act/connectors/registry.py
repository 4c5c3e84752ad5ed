"""The workspace's connectors: declared in `rulebridge.toml`, bound by `rules/actions.yaml`.

    [connectors.kg]                  # the embedded default, present even when not declared
    kind = "kg"

    [connectors.erp]
    kind = "sql"
    url = "postgresql+psycopg://erp@db/erp"
    timeout = 5                      # seconds: lock and statement waits (SQLite: the busy timeout)

    [connectors.crm]
    kind = "http"
    base_url = "https://crm.example/api"
    timeout = 5
    status = {method = "GET", path = "/executions/{key}"}   # optional: makes `status` exact

    [connectors.tickets]
    kind = "python"
    class = "examples.custom_connector:TicketConnector"     # module:Class, see `base.Connector`
    path = ".rulebridge/tickets.jsonl"                      # any other key goes to the class

Every connector also takes `retries` (3), `backoff` (0.2 s, doubling, with jitter),
`max_backoff` (5 s), `breaker_failures` (5) and `breaker_reset` (30 s): `build_connectors`
wraps each in `Resilient` with them.

`check_bindings` is the load-time check (`rulebridge check`): the declarations, and each
action's binding against its connector's template language, with file:line:col diagnostics.

A python connector is code that runs: the workspace is trusted like source code. Its class is
loaded only from an installed package or from the workspace (`locate_class`), and only when it
is first used (`LazyConnector`): an action bound to it runs, or recovery asks it about one. `check`
tells where each class would come from without importing it: no workspace code runs in `check`.
"""

from __future__ import annotations

import importlib
import importlib.util
import site
import sys
import sysconfig
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, RulebridgeError, Span, shown, suggest_help
from engine.lang.actions import ActionCatalog
from engine.lang.source import plain

from .base import Connector, ExecutionStatus, PermanentError
from .resilience import Resilient

KINDS = ("kg", "sql", "http", "python")
RESILIENCE = {"retries": 3, "backoff": 0.2, "max_backoff": 5.0, "breaker_failures": 5, "breaker_reset": 30.0}
COMMON = ("kind", *RESILIENCE)
KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind → (required, optional)
    "kg": ((), ()),
    "sql": (("url",), ("timeout",)),
    "http": (("base_url",), ("timeout", "status", "headers")),
    "python": (("class",), ()),  # any other key is an option of the class
}


def _kind(kind: str) -> Any:
    """The module of a connector kind, imported when a workspace uses it (sqlalchemy and httpx
    cost a quarter of a second to import; a workspace on the graph alone never pays it)."""
    return importlib.import_module(f"{__package__}.{kind}")


class ConnectorConfigError(RulebridgeError):
    """A connector declaration that cannot be used (unknown kind, missing url, a class that cannot be loaded)."""

    code = "connector_config"


def declared(config: Any) -> dict[str, dict[str, Any]]:
    """The `[connectors]` table of a `Config` (or of the parsed TOML), with `kg` always present."""
    data = getattr(config, "data", config) or {}
    table = data.get("connectors") or {}
    out = {str(k): dict(v) if isinstance(v, dict) else {"kind": None} for k, v in table.items()}
    out.setdefault("kg", {"kind": "kg"})
    return out


def installed_roots() -> tuple[Path, ...]:
    """Where installed code lives: the standard library, the site-packages folders, and the
    rulebridge package itself (wherever it is installed from)."""
    import engine

    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)}
    dirs |= set(site.getsitepackages()) if hasattr(site, "getsitepackages") else set()
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    dirs.add(str(Path(engine.__file__).parent))
    return tuple(Path(d).resolve() for d in dirs)


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    real = path.resolve()
    return any(real == r or real.is_relative_to(r) for r in roots)


def _origins(top: str) -> list[Path] | None:
    """Where the top-level module `top` would be imported from, found without running any code
    (`[]`: built into the interpreter; None: not found)."""
    mod = sys.modules.get(top)
    spec = getattr(mod, "__spec__", None) if mod is not None else None
    mod_file = getattr(mod, "__file__", None) if mod is not None else None
    if spec is None and mod_file:
        return [Path(mod_file)]
    if spec is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    if spec.origin in ("built-in", "frozen"):
        return []
    locations = list(spec.submodule_search_locations or [])
    return [Path(p) for p in locations or ([spec.origin] if spec.origin else [])]


def locate_class(ref: str, root: Path | None) -> tuple[str, str, Path | None]:
    """(module, class, file) for `module:Class`, checked without running any code: `file` is None
    when the module is imported from an installed package, else its file in the workspace.

    The rule: `module` is a dotted Python name (never a path: `../evil`, `/abs/evil.py`,
    `.relative` are refused). It is imported when its top-level package lies in the standard
    library, a site-packages folder or rulebridge itself (or in the workspace); else it is the
    file `<root>/a/b.py` for `a.b`, which must resolve — symlinks followed — inside the workspace.
    A module found anywhere else (the current folder, a PYTHONPATH entry) is refused, as is one
    found nowhere; `ConnectorConfigError` (`connector_config`) says which and where."""
    module_name, _, cls_name = ref.partition(":")
    parts = module_name.split(".")
    if not all(p.isidentifier() for p in parts) or not cls_name.isidentifier():
        raise ConnectorConfigError(f"`{shown(ref)}` is not `module:Class` with a dotted Python "
                                   "module name")
    ws = root.resolve() if root is not None else None
    trusted = installed_roots() + ((ws,) if ws is not None else ())
    found = _origins(parts[0])
    if found is not None and all(_inside(p, trusted) for p in found):
        return module_name, cls_name, None
    file = (ws / Path(*parts)).with_suffix(".py") if ws is not None else None
    if file is not None and ws is not None and file.is_file():
        if not _inside(file, (ws,)):
            raise ConnectorConfigError(f"`{file}` resolves to `{file.resolve()}`, outside the "
                                       "workspace")
        return module_name, cls_name, file.resolve()
    if found:
        raise ConnectorConfigError(f"module `{module_name}` resolves to `{found[0]}`, outside the "
                                   "workspace and the installed packages")
    nor = f" (nor `{file}`)" if file is not None else ""
    raise ConnectorConfigError(f"module `{module_name}` not found{nor}")


def load_class(ref: str, root: Path | None = None) -> type:
    """`package.module:Class` from an installed package or the workspace `root` (`locate_class`);
    importing it runs its code. Raises `ConnectorConfigError` for anything else."""
    module_name, cls_name, file = locate_class(ref, root)
    try:
        if file is None:
            trusted = installed_roots() + ((root.resolve(),) if root is not None else ())
            cached = getattr(sys.modules.get(module_name), "__file__", None)
            if cached and not _inside(Path(cached), trusted):  # loaded from another workspace
                del sys.modules[module_name]
            module = importlib.import_module(module_name)
            where = getattr(module, "__file__", None)
            if where and not _inside(Path(where), trusted):  # INVARIANT: as located, or refused
                raise ConnectorConfigError(f"module `{module_name}` was imported from `{where}`, "
                                           "outside the workspace and the installed packages")
        else:
            loaded = sys.modules.get(module_name)
            if loaded is None or Path(getattr(loaded, "__file__", "") or "").resolve() != file:
                module = _load_file(module_name, file)
            else:
                module = loaded
    except ConnectorConfigError:
        raise
    except Exception as exc:  # the module's own code failed: an import error, a bug, a syntax error
        raise ConnectorConfigError(f"module `{module_name}` cannot be imported: "
                                   f"{type(exc).__name__}: {shown(str(exc), 200)}") from exc
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise ConnectorConfigError(f"module `{module_name}` has no class `{cls_name}`")
    return cls


def _load_file(module_name: str, file: Path) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


class LazyConnector:
    """A python connector imported and built on first use, so that a declared one no action uses
    never runs, and one that cannot be imported fails only what is bound to it."""

    def __init__(self, name: str, build: Callable[[], Connector]):
        self.name = name
        self._build = build
        self._inner: Connector | None = None
        self._lock = threading.Lock()

    def ready(self) -> Connector:
        """The connector, imported and built now if it was not yet; `ConnectorConfigError` if it
        cannot be."""
        if self._inner is None:
            with self._lock:
                if self._inner is None:
                    self._inner = self._build()
        return self._inner

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        try:
            inner = self.ready()
        except ConnectorConfigError as exc:  # never reached the system: certainly not done
            raise PermanentError(f"connector `{self.name}`: {exc}", code=exc.code) from exc
        return inner.execute(action, params, key=key)

    def status(self, key: str) -> ExecutionStatus:
        return self.ready().status(key)

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


def _number(settings: dict[str, Any], key: str, default: float) -> float:
    v = settings.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConnectorConfigError(f"`{key}` must be a number >= 0, not `{v}`")
    return float(v)


def config_errors(name: str, settings: dict[str, Any]) -> list[str]:
    """What is wrong with one declaration (empty: nothing)."""
    kind = settings.get("kind")
    if kind not in KINDS:
        return [f"connector `{name}`: unknown kind `{kind}` (known: {', '.join(KINDS)})"]
    required, optional = KIND_KEYS[kind]
    out = [f"connector `{name}` ({kind}) needs `{k}`" for k in required if not settings.get(k)]
    if kind != "python":
        out += [f"connector `{name}` ({kind}): unknown key `{k}`"
                for k in sorted(set(settings) - set(COMMON) - set(required) - set(optional))]
    for k in [*RESILIENCE, "timeout"]:
        if k in settings:
            try:
                _number(settings, k, 0)
            except ConnectorConfigError as exc:
                out.append(f"connector `{name}`: {exc}")
    if kind == "http" and settings.get("status") is not None:
        st = settings["status"]
        if not isinstance(st, dict) or not str(st.get("path", "")).startswith("/"):
            out.append(f"connector `{name}`: `status` is `{{method = \"GET\", path = \"/...{{key}}\"}}`")
    return out


def build_connectors(config: Any, store: Any, actions: ActionCatalog, *, root: Path | None = None,
                     prefixes: dict[str, str] | None = None, resilient: bool = True,
                     sleep: Callable[[float], None] | None = None) -> dict[str, Connector]:
    """One connector per declaration, each wrapped in `Resilient` (unless `resilient=False`).

    `config` is the workspace `Config` or the parsed `rulebridge.toml` (a dict with `connectors`).
    Raises `ConnectorConfigError` for a declaration that cannot be used.
    """
    root = root or getattr(config, "root", None)
    if prefixes is None:
        data = getattr(config, "data", config) or {}
        prefixes = dict(data.get("prefixes", {})) if isinstance(data.get("prefixes"), dict) else {}
    out: dict[str, Connector] = {}
    for name, settings in declared(config).items():
        errors = config_errors(name, settings)
        if errors:
            raise ConnectorConfigError("; ".join(errors))
        conn = _build_one(name, settings, store, actions, root=root, prefixes=prefixes)
        if resilient:
            kw = {k: _number(settings, k, d) for k, d in RESILIENCE.items()}
            conn = Resilient(conn, retries=int(kw["retries"]), backoff=kw["backoff"], max_backoff=kw["max_backoff"],
                             breaker_failures=max(1, int(kw["breaker_failures"])), breaker_reset=kw["breaker_reset"],
                             **({"sleep": sleep} if sleep else {}))
        out[name] = conn
    return out


def _build_one(name: str, settings: dict[str, Any], store: Any, actions: ActionCatalog, *, root: Path | None,
               prefixes: dict[str, str]) -> Connector:
    kind = settings["kind"]
    if kind == "kg":
        if store is None:
            raise ConnectorConfigError(f"connector `{name}` (kg) needs the workspace graph, which is not loaded")
        from .kg import KgConnector  # each kind imported when a workspace uses it (see `_kind`)

        try:
            return KgConnector(name, store, actions, prefixes=prefixes)
        except ValueError as exc:  # a template that would not be one operation
            raise ConnectorConfigError(f"connector `{name}`: {exc}") from exc
    if kind == "sql":
        from .sql import SqlConnector

        return SqlConnector(name, actions, url=str(settings["url"]), timeout=_number(settings, "timeout", 5.0))
    if kind == "http":
        from .http import HttpConnector

        return HttpConnector(name, actions, base_url=str(settings["base_url"]),
                             timeout=_number(settings, "timeout", 5.0), status=settings.get("status"),
                             headers=settings.get("headers"))
    options = {k: v for k, v in settings.items() if k not in (*COMMON, "class")}
    bindings = {spec.name: plain(spec.execute.template) for spec in actions.actions.values()
                if spec.execute is not None and spec.execute.connector == name}
    ref = str(settings["class"])
    return LazyConnector(name, lambda: _build_python(name, ref, bindings, options, root))


def _build_python(name: str, ref: str, bindings: dict[str, Any], options: dict[str, Any],
                  root: Path | None) -> Connector:
    cls = load_class(ref, root)
    try:
        conn = cls(name, bindings=bindings, options=options, root=root)
    except (TypeError, ValueError) as exc:
        raise ConnectorConfigError(f"`{ref}` cannot be built as connector `{name}`: {exc}") from exc
    if not isinstance(conn, Connector):
        raise ConnectorConfigError(f"`{ref}` does not implement the connector protocol "
                                   "(`name`, `execute(action, params, *, key)`, `status(key)`)")
    return conn


# -- load-time checks ------------------------------------------------------------------------------

def _section_span(config_file: Path | None, name: str) -> Span | None:
    """Where `[connectors.NAME]` starts in rulebridge.toml (for diagnostics), else the file."""
    if config_file is None:
        return None
    try:
        lines = config_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return Span(str(config_file))
    for i, line in enumerate(lines, 1):
        if line.strip().replace(" ", "") in (f"[connectors.{name}]", f'[connectors."{name}"]'):
            return Span(str(config_file), i, 1, i, len(line) + 1)
    return Span(str(config_file))


def check_bindings(actions: ActionCatalog, config: Any, sink: DiagnosticSink, *, config_file: Path | None = None,
                   prefixes: dict[str, str] | None = None) -> None:
    """Check the connector declarations and every action's `execute:` binding against them."""
    decl = declared(config)
    root = config_file.parent if config_file is not None else getattr(config, "root", None)
    for name, settings in decl.items():
        errors = config_errors(name, settings)
        if not errors and settings.get("kind") == "python":
            try:  # where the class would come from; nothing is imported here
                locate_class(str(settings["class"]), root)
            except ConnectorConfigError as exc:
                errors = [f"connector `{name}`: {exc}"]
        for msg in errors:
            sink.error("config", msg, _section_span(config_file, name))
    checkers: Mapping[str, Callable[..., None]] = {
        "kg": lambda spec, b: _kind("kg").check_binding(spec, b, sink, prefixes=prefixes),
        "sql": lambda spec, b: _kind("sql").check_binding(spec, b, sink),
        "http": lambda spec, b: _kind("http").check_binding(spec, b, sink),
    }
    for spec in actions.actions.values():
        b = spec.execute
        if b is None:
            continue
        if b.connector not in decl:
            help_, sug = suggest_help(b.connector, decl, "connectors")
            sink.error("unknown_name", f"unknown connector `{b.connector}` in the binding of `{spec.name}`",
                       b.connector_span or b.span, help=help_ or "declare it under `[connectors]` in rulebridge.toml",
                       suggestion=sug)
            continue
        check = checkers.get(str(decl[b.connector].get("kind")))
        if check is not None:
            check(spec, b)


__all__ = ["KINDS", "ConnectorConfigError", "LazyConnector", "build_connectors", "check_bindings",
           "declared", "load_class", "locate_class"]
