"""A workspace on disk: `rulebridge.toml`, `rules/`, `knowledge_graph/` — loaded and checked.

`load_workspace` never raises on user errors: it returns the workspace with every
diagnostic found, so `rulebridge check` can report them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Config, load_config
from engine.errors import Diagnostic, DiagnosticSink, Span
from engine.kg.derived import DERIVED_IMPLS, GraphAlgorithms, GraphContext, NamedQuery, derived_signatures, load_queries
from engine.kg.ontology import load_schema
from engine.kg.store import BACKENDS, GraphStore, data_files, open_store
from engine.lang.actions import ActionCatalog, load_actions
from engine.lang.compiler import CompileContext, CompiledRuleset, RulesetCompiler
from engine.lang.source import read_source
from engine.lang.stream import CompiledStream, StreamCompiler, check_emits, stream_file
from engine.lang.types import Schema


@dataclass
class Workspace:
    """Everything a workspace declares, compiled; `diagnostics` holds what is wrong with it."""

    root: Path
    config: Config
    schema: Schema
    prefixes: dict[str, str]
    actions: ActionCatalog
    queries: dict[str, NamedQuery]
    rulesets: dict[str, CompiledRuleset]  # by ruleset name
    by_case_type: dict[str, CompiledRuleset]
    store: GraphStore | None
    graph: GraphContext | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    agents: Any = None  # engine.govern.agents.AgentRegistry
    gate: Any = None  # engine.govern.verify.Gate (None until the graph is loaded)
    streams: list[CompiledStream] = field(default_factory=list)  # stream files: events, correlations

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity.value == "error"]

    @property
    def rule_revision(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.rulesets):
            h.update(f"{name}@{self.rulesets[name].version};".encode())
        for s in self.streams:
            h.update(f"stream:{s.name}@{s.version};".encode())
        return h.hexdigest()[:12]


def rule_files(rules_dir: Path, *declarations: Path) -> list[Path]:
    """Every ruleset file under `rules/` (YAML), except the declarations: the action catalog, the
    agents file and the audit log's masking rules."""
    if not rules_dir.exists():
        return []
    skip = {d.resolve() for d in declarations}
    files = sorted(p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [p for p in files if p.resolve() not in skip and not p.name.startswith("_")]


def load_workspace(root: Path | str, *, load_graph: bool = True, only: list[Path] | None = None,
                   backend: str | None = None) -> Workspace:
    """Load and check a workspace. With `only`, compile just those rule files."""
    root = Path(root).resolve()
    sink = DiagnosticSink()
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "does not exist"
        sink.error("config", f"the workspace `{root}` {why}", Span(str(root)),
                   help="give the workspace folder, the one with rulebridge.toml")
    config = load_config(root, sink)
    graph_cfg = config.section("graph")
    schema, prefixes = load_schema(config.path("graph", "ontology"), sink)
    prefixes = {**prefixes, **{str(k): str(v) for k, v in config.section("prefixes").items()}}
    actions_file = config.path("rules", "actions")
    actions = load_actions(actions_file, schema, sink) if actions_file.exists() else ActionCatalog()
    from engine.act.connectors.registry import check_bindings  # the connectors' template languages

    check_bindings(actions, config, sink, config_file=root / "rulebridge.toml", prefixes=prefixes)
    infer_targets(actions, config, sink)
    mask_file = config.path("audit", "mask")
    if mask_file.exists():  # the audit log's masking rules: checked with everything else
        from engine.audit.mask import parse_masker
        from engine.lang.source import load_yaml

        parse_masker(load_yaml(mask_file, sink), str(mask_file), sink)
    queries = load_queries(config.path("graph", "queries"), sink)
    ctx = CompileContext(schema, actions, derived_signatures(queries, schema), DERIVED_IMPLS, prefixes)
    rulesets: dict[str, CompiledRuleset] = {}
    by_type: dict[str, CompiledRuleset] = {}
    agents_file = config.path("agents", "file")
    files = only if only is not None else rule_files(config.path("rules", "dir"), actions_file, agents_file,
                                                     config.path("audit", "mask"))
    streams: list[CompiledStream] = []
    for f in files:
        text, _why = read_source(f)
        if text is not None and stream_file(text):
            _add_stream(StreamCompiler(f, schema, sink, text=text).compile(), streams, sink)
            continue
        rs = RulesetCompiler(f, ctx, sink).compile()
        if rs is None:
            continue
        if rs.name in rulesets:
            sink.error("duplicate_id", f"ruleset `{rs.name}` is also defined in {rulesets[rs.name].file}",
                       Span(rs.file, 1, 1))
            continue
        if rs.case_type in by_type:
            other = by_type[rs.case_type]
            sink.error("duplicate_case_type", f"case type `{rs.case_type}` is already decided by ruleset "
                       f"`{other.name}`", Span(rs.file, 1, 1),
                       help="one ruleset decides a case type; merge the rules or use another `on:`")
            continue
        rulesets[rs.name] = rs
        by_type[rs.case_type] = rs
    check_emits(streams, {t: rs.case_schema for t, rs in by_type.items()}, sink)
    store = None
    graph = None
    if load_graph:
        backend = backend or str(graph_cfg.get("backend", "oxigraph"))  # RULEBRIDGE_GRAPH_BACKEND: in the config
        if backend not in BACKENDS:
            from engine.errors import suggest_help

            help_, _ = suggest_help(backend, BACKENDS, "graph backends")
            sink.error("config", f"unknown graph backend `{backend}`", Span(str(root / "rulebridge.toml")),
                       help=help_ or f"one of: {', '.join(BACKENDS)}")
        store_path = graph_cfg.get("store_path") or ""
        cache = graph_cfg.get("read_cache")
        if cache is not None and (isinstance(cache, bool) or not isinstance(cache, int) or cache < 0):
            sink.error("config", f"`[graph] read_cache` must be a whole number >= 0, not `{cache!r}`",
                       Span(str(root / "rulebridge.toml")), help="the number of graph look-ups kept per revision; "
                       "0 turns the cache off")
            cache = 0
        endpoint = {k: v for k, v in graph_cfg.items() if k in ("query_url", "update_url", "timeout")}
        if backend in BACKENDS:
            try:
                store = open_store(config.path("graph", "data"), backend=backend,
                                   path=(root / store_path) if store_path else None, read_cache=cache,
                                   endpoint=endpoint)
            except ConnectionError as exc:  # a remote endpoint that does not answer
                sink.error("graph_unavailable", f"cannot reach the graph: {str(exc).splitlines()[0][:300]}",
                           Span(str(root / "rulebridge.toml")), help="start the SPARQL server, or check "
                           "`[graph] query_url` / RULEBRIDGE_GRAPH_QUERY_URL")
            except (OSError, SyntaxError, ValueError) as exc:
                sink.error("graph_syntax", f"cannot load the graph: {str(exc).splitlines()[0][:300]}",
                           Span(str(config.path("graph", "data"))))
        if store is not None:
            graph = GraphContext(store, queries, schema, GraphAlgorithms(store))
    from engine.govern.agents import load_agents

    agents = load_agents(agents_file, actions, ctx, sink)
    models_built = _build_models(actions, sink)
    gate = _gate(config, schema, prefixes, actions, ctx, sink, store)
    gate.agents_plan = agents.plan
    if models_built:
        _check_literal_params(rulesets, gate, sink, with_graph=store is not None)
    _check_unchecked_params(rulesets, actions, gate, sink)
    from engine.llm.config import load_llm_config

    for d in load_llm_config(config.section("llm"), root, config.llm_environment())[1]:
        sink.error(d.code, d.message, Span(str(root / "rulebridge.toml")), help=d.help)
    return Workspace(root, config, schema, prefixes, actions, queries, rulesets, by_type, store, graph,
                     sorted(sink.items, key=Diagnostic.sort_key), agents, gate, streams)


def _add_stream(stream: CompiledStream | None, streams: list[CompiledStream], sink: DiagnosticSink) -> None:
    """A compiled stream file joins the workspace unless it reuses a stream name, an event type
    or a correlation id another one declares."""
    if stream is None:
        return
    for other in streams:
        if other.name == stream.name:
            sink.error("duplicate_id", f"stream `{stream.name}` is also defined in {other.file}",
                       Span(stream.file, 1, 1))
            return
        ids = {c.id for c in other.correlations}
        for c in stream.correlations:
            if c.id in ids:
                sink.error("duplicate_id", f"correlation `{c.id}` is also defined in {other.file}", c.span)
                return
        for name, et in stream.events.items():
            if name in other.events:
                sink.error("duplicate_id", f"event type `{name}` is also declared in {other.file}", et.span,
                           help="declare each event type once, in the stream file whose correlations use it")
                return
    streams.append(stream)


def infer_targets(actions: ActionCatalog, config: Config, sink: DiagnosticSink) -> None:
    """Fill in each action's targets (the parameters naming the entities it changes) where
    `targets:` does not declare them: for a graph binding, the entities its template writes
    about; for any other connector, every entity parameter (it cannot be read from the template).
    A declared list that leaves out an entity the graph template writes about is an error."""
    from engine.act.connectors.kg import changed_params
    from engine.act.connectors.registry import declared

    kinds = {name: d.get("kind") for name, d in declared(config).items()}
    for spec in actions.actions.values():
        changed = None
        if spec.execute is not None and kinds.get(spec.execute.connector) == "kg":
            changed = changed_params(spec, spec.execute.template)
        if spec.targets is None:
            spec.targets = {p: "case" for p in spec.class_params() if changed is None or p in changed}
            continue
        for p in sorted((changed or set()) - set(spec.targets)):
            sink.error("action_targets", f"`{spec.name}` changes the entity `{p}` names (its graph template writes "
                       f"about `?{p}`), but `{p}` is not among its targets", spec.targets_span or spec.span,
                       help=f"add `{p}` to `targets:`")


def _check_unchecked_params(rulesets: dict[str, CompiledRuleset], actions: ActionCatalog, gate: Any,
                            sink: DiagnosticSink) -> None:
    """Warn where an entity parameter an action only refers to (not a target: an approver, an
    owner) is read by no precondition of the action and no guard of the ruleset — any entity
    of that class a model or a reviewer names would pass the gate."""
    from engine.lang.compiler import proposed_actions
    from engine.lang.targets import params_read

    for rs in rulesets.values():
        for action, at in sorted(proposed_actions(rs.rules).items()):
            spec = actions.actions.get(action)
            if spec is None:
                continue
            read: set[str] = set()
            for c in gate.preconditions.get(action, []):
                read |= c.reads
            for g in rs.guards:
                if not g.applies_to or action in g.applies_to:
                    read |= params_read(g.node)
            for p in spec.class_params():
                if p in (spec.targets or {}) or p in read:
                    continue
                sink.warning("unchecked_param", f"nothing checks `params.{p}` of `{action}` in ruleset `{rs.name}`: "
                             f"any `{spec.params[p].type}` a model or reviewer names passes the gate", at,
                             help=f"add a precondition over `params.{p}` to `{action}` in the action catalog, or a "
                             f"guard of this ruleset that reads it")


def _build_models(actions: ActionCatalog, sink: DiagnosticSink) -> bool:
    """Build every action's validation model now, so that one pydantic cannot build fails the
    load (not the first proposal, which would be denied as unverifiable); whether all were built."""
    ok = True
    for name, spec in actions.actions.items():
        try:
            actions.model(name)
        except Exception as exc:  # noqa: BLE001 - pydantic's errors for a field it refuses vary in type
            ok = False
            sink.error("schema", f"the parameters of action `{name}` cannot be checked: {str(exc).splitlines()[0]}",
                       spec.span, help="see the parameter types and names in the action catalog")
    return ok


def _check_literal_params(rulesets: dict[str, CompiledRuleset], gate: Any, sink: DiagnosticSink, *,
                          with_graph: bool) -> None:
    """A consequence parameter written as a literal must fit its action's schema (ranges, enums, IRIs)."""
    from engine.lang.action_models import literal_errors
    from engine.lang.expr import Lit

    for rs in rulesets.values():
        for rule in rs.rules:
            then = rule.then
            if then.kind != "action" or not then.action:
                continue
            for name, (node, _fn) in then.params.items():
                if not isinstance(node, Lit) or node.value is None:
                    continue
                spec = gate.catalog.actions[then.action].params.get(name)
                if spec is not None and spec.type.kind == "ref" and not with_graph:
                    continue
                for msg in literal_errors(gate.catalog, then.action, name, node.value, gate.param_ctx):
                    sink.error("action_params", f"parameter `{name}` of `{then.action}` in rule `{rule.id}`: "
                               f"{msg.lower()}", node.span or rule.span,
                               help="the value must fit the action's schema in the action catalog")


def _gate(config: Config, schema: Schema, prefixes: dict[str, str], actions: ActionCatalog, ctx: CompileContext,
          sink: DiagnosticSink, store: GraphStore | None) -> Any:
    """The verification gate: the action catalog, compiled preconditions, the class-membership test."""
    from engine.govern.verify import Gate
    from engine.kg.store import RDF_TYPE
    from engine.lang.action_models import ParamContext
    from engine.lang.conditions import ParamConditionCompiler

    compiler = ParamConditionCompiler(ctx, sink, actions.file or "actions.yaml")
    pre = {name: compiler.compile_all(spec.preconditions, spec) for name, spec in actions.actions.items()}
    def instance_of(iri: str, cls: str) -> bool:
        if store is None:
            return False
        return any(schema.is_subclass(schema.class_named(str(t)), cls) for t in store.objects(iri, RDF_TYPE))

    llm = config.section("llm")
    threshold = float(llm.get("confidence_threshold", 0.8))
    return Gate(actions, pre, compiler.plan, {}, ParamContext(prefixes, instance_of), prefixes, threshold,
                schema=schema)


def validate_shapes(ws: Workspace) -> list[Diagnostic]:
    """SHACL validation of the workspace graph data against `knowledge_graph/shapes/`."""
    from pyshacl import validate
    from rdflib import Graph, Namespace

    shapes_dir = ws.config.path("graph", "shapes")
    shape_files = data_files(shapes_dir)
    if not shape_files:
        return []
    data = Graph()
    for f in data_files(ws.config.path("graph", "data")):
        data.parse(str(f))
    shapes = Graph()
    for f in shape_files:
        shapes.parse(str(f))
    ont = Graph()
    for f in data_files(ws.config.path("graph", "ontology")):
        ont.parse(str(f))
    conforms, report, _text = validate(data, shacl_graph=shapes, ont_graph=ont, inference="none",
                                       allow_warnings=True)
    if conforms:
        return []
    SH = Namespace("http://www.w3.org/ns/shacl#")
    out = []
    for r in sorted(report.subjects(SH.resultSeverity, None), key=str)[:200]:
        focus = report.value(r, SH.focusNode)
        path = report.value(r, SH.resultPath)
        msg = report.value(r, SH.resultMessage)
        out.append(Diagnostic("shacl", f"`{focus}`: {path.split('#')[-1] if path else ''}: {msg}",
                              Span(str(ws.config.path("graph", "data")))))
    return out
