"""The ``voxpipe`` command line.

Every command imports what it needs when it runs, so ``voxpipe --help`` stays fast. A
user mistake (bad YAML, bad file, unknown type) prints its message and exits with 2;
a pipeline that failed while running exits with 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]



class _Help(argparse.HelpFormatter):
    """Each option's help ends with its default when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" not in text and action.option_strings and default not in (None, False, argparse.SUPPRESS)
                and not (isinstance(default, list) and not default)):
            text += " (default: %(default)s)"
        return text


def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="the pipeline YAML file, or the name of a shipped one (demo.yaml, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a param, e.g. --set model.voice=nova (repeatable)")


def pipeline_path(name: str | None, default: str) -> Path:
    """A pipeline argument as a path: a file that exists, else a pipeline voxpipe ships.

    ``voxpipe run demo.yaml`` works from any directory: a bare name that is not a file
    here is looked up among the shipped pipelines (package data, see :mod:`pipelines`).
    """
    path = Path(name or default)
    if path.exists() or path.parent != Path("."):
        return path
    from pipelines import shipped

    try:
        return shipped(path.name)
    except FileNotFoundError:
        return path  # the loader says it does not exist, with the shipped names


def _load(args):
    from .loader import load

    return load(pipeline_path(args.pipeline, ""), overrides=args.overrides)


def preflight(graph) -> None:
    """Ask each processor that can (a ``preflight()`` method) whether it can start; raises VoxpipeError."""
    for node in graph.nodes.values():
        check = getattr(node.processor, "preflight", None)
        if check is not None:
            check()


#: Types that converse at their own pace: --fast would hand them a whole conversation at once.
_PACED_TYPES = ("realtime.", "live.")
#: Types after which the live view sits: it sees what they emit and what comes back to them.
_TALKERS = ("realtime.", "live.", "brain.", "stt.")


def _refuse_fast(graph) -> None:
    from .errors import VoxpipeError

    paced = [nid for nid, n in graph.nodes.items() if str(n.type).startswith(_PACED_TYPES)]
    if paced:
        raise VoxpipeError(
            f"--fast would push the whole input into the realtime model ({', '.join(paced)}) at once: it would "
            "hear the conversation before its first answer and barge-ins would land at random. Run it without "
            "--fast (real time); --fast is for file pipelines and tests")


def _is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _live_view(graph, args):
    """The console the run prints through: the YAML's debug.console, or one inserted after the model.

    Returns the printer, or None when nothing is shown (``--quiet``, no terminal and no
    ``--log-format json``, or no node that talks).
    """
    from processors.debug.console import ConsolePrinter

    consoles = [n.processor for n in graph.nodes.values() if isinstance(n.processor, ConsolePrinter)]
    as_json = args.log_format == "json"
    if args.quiet:
        import io

        for console in consoles:
            console.stream = io.StringIO()  # the YAML asked for it; --quiet wins
        return None
    if as_json:
        for console in consoles:
            console.params.format = "json"
    if consoles:
        return consoles[0]
    if not (as_json or _is_terminal()):
        return None
    talkers = [nid for nid, n in graph.nodes.items() if str(n.type).startswith(_TALKERS)]
    if not talkers:
        return None
    printer = ConsolePrinter({"speaking": not as_json, "format": "json" if as_json else "text"}, name="live")
    after = talkers[0]
    outputs = graph.outputs(after)
    if outputs:
        graph.insert("live", printer, between=(after, outputs[0]), type="debug.console")
    else:
        graph.add("live", printer, type="debug.console")
        graph.link(after, "live")
        graph.check()
    return printer


def cmd_run(args) -> int:
    import anyio

    from .runner import run

    graph = _load(args)
    if args.fast:
        _refuse_fast(graph)
    preflight(graph)
    live = _live_view(graph, args)
    if live is not None and live.params.format == "text":
        mode = "as fast as possible" if args.fast else "at real time"
        print(f"voxpipe run: {graph.name!r} {mode}; Ctrl-C ends it, --quiet hides this view", flush=True)
    result = anyio.run(lambda: run(graph, realtime=not args.fast, stats=args.stats, handle_signals=True))
    as_json = args.log_format == "json"
    for err in result.errors:
        if as_json:
            print(json.dumps({"event": "error", "processor": err.processor, "message": err.message}), file=sys.stderr)
        else:
            print(f"error in {err.processor}: {err.message}", file=sys.stderr)
    if args.stats:
        print(json.dumps({"event": "stats", "stats": result.stats}, default=str) if as_json else format_stats(result.stats))
    if result.hung:
        print(f"still busy when cancelled: {', '.join(result.hung)}", file=sys.stderr)
    if as_json:
        print(json.dumps({"event": "end", "pipeline": graph.name, "ended": result.ended, "ok": result.ok}))
    else:
        print(f"pipeline {graph.name!r} ended: {result.ended}", file=sys.stderr)
    return 0 if result.ok else 1


def format_stats(stats: dict) -> str:
    """A table of per-processor queue and latency figures."""
    head = f"{'processor':<22}{'frames':>8}{'p50 us':>10}{'p99 us':>10}{'max us':>10}{'dropped':>9}{'stale':>7}{'queue hw':>10}"
    rows = [head, "-" * len(head)]
    for name, s in stats.items():
        rows.append(
            f"{name:<22}{s.get('frames', 0):>8}{s.get('p50_us', 0):>10.1f}{s.get('p99_us', 0):>10.1f}"
            f"{s.get('max_us', 0):>10.1f}{s.get('dropped', 0):>9}{s.get('stale', 0):>7}"
            f"{str(s.get('high_water', 0)) + '/' + str(s.get('max_size', '-')):>10}"
        )
        extra = {k: v for k, v in s.items() if k not in {"frames", "p50_us", "p99_us", "max_us", "mean_us", "dropped", "stale", "queued", "max_size", "high_water"}}
        if extra:
            rows.append(f"{'':<4}{json.dumps(extra, default=str)}")
    return "\n".join(rows)


def cmd_validate(args) -> int:
    graph = _load(args)
    inserted = [n for n, node in graph.nodes.items() if node.inserted]
    print(f"{args.pipeline}: ok ({len(graph.nodes)} processors, {len(graph.links)} links"
          + (f"; inserted {', '.join(inserted)}" if inserted else "") + ")")
    return 0


def cmd_graph(args) -> int:
    graph = _load(args)
    print(graph.to_dot() if args.format == "dot" else graph.to_mermaid(), end="")
    return 0


def cmd_schema(args) -> int:
    from .schema import pipeline_schema

    print(json.dumps(pipeline_schema(), indent=2))
    return 0


def cmd_processors(args) -> int:
    from . import reference

    if args.markdown:
        text = reference.reference_markdown()
        if args.markdown == "-":
            print(text, end="")
        else:
            Path(args.markdown).write_text(text, encoding="utf-8")
            print(f"wrote {args.markdown}", file=sys.stderr)
        return 0
    print(reference.type_text(args.name) if args.name else reference.types_table(), end="" if args.name else "\n")
    return 0


def cmd_devices(args) -> int:
    from processors.devices.sound import format_devices, list_devices

    print(format_devices(list_devices()))
    return 0


def cmd_realtime_server(args) -> int:
    import anyio

    from processors.realtime.server.server import main as server_main

    anyio.run(lambda: server_main(args.host, args.port, args.rules, args.model_delay_ms,
                                  allow_origins=tuple(args.allow_origin), allow_hosts=tuple(args.allow_host),
                                  processes=args.processes))
    return 0


def cmd_demo(args) -> int:
    from pipelines.demo import DEMO, LIVE_DEMO, run_demo

    return run_demo(out_dir=Path(args.out), pipeline=LIVE_DEMO if getattr(args, "model", "realtime") == "live" else DEMO)


def cmd_bench(args) -> int:
    if args.pipeline:
        from .errors import VoxpipeError
        from pipelines.pipeline_bench import bench_pipeline

        if args.quick or args.only:
            raise VoxpipeError("--quick and --only choose among voxpipe's own benchmarks; leave them out with a PIPELINE")
        graph_path = pipeline_path(args.pipeline, "")
        if args.fast:
            from .loader import load

            _refuse_fast(load(graph_path, overrides=args.overrides))
        return bench_pipeline(graph_path, overrides=args.overrides, fast=args.fast, runs=args.runs,
                              duration_s=args.duration, max_turns=args.turns, json_path=args.json,
                              baseline=args.baseline, tolerance=args.tolerance, plot_dir=args.plot)
    if args.baseline or args.fast or args.overrides or args.turns or args.duration or args.runs != 1:
        from .errors import VoxpipeError

        raise VoxpipeError("--fast, --runs, --turns, --duration, --set and --baseline measure a pipeline: "
                           "give one, e.g. voxpipe bench my.yaml --baseline bench.json")
    from pipelines.bench import run_bench

    return run_bench(quick=args.quick, json_path=args.json, plot_dir=args.plot, only=args.only)


def cmd_serve(args) -> int:
    import os

    import anyio

    from .errors import VoxpipeError
    from processors.web.server import serve

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1 or args.max_sessions < 1 or args.drain_timeout < 0 or (args.max_cpu is not None and args.max_cpu <= 0):
        raise VoxpipeError("--workers and --max-sessions take 1 or more, --drain-timeout 0 or more seconds, "
                           "--max-cpu a share of one core above 0 (0.9 = 90%)")
    path = pipeline_path(args.pipeline, "web_agent.yaml")
    if workers > 1:  # processors/serving/workers.py: N processes on one port (SO_REUSEPORT)
        from processors.serving.workers import run_workers

        from processors.web.server import TOKEN_ENV, is_loopback

        if not is_loopback(args.host) and not (args.token or os.environ.get(TOKEN_ENV)):
            raise VoxpipeError(f"refusing to serve on {args.host} without a token: anyone who can reach it could use "
                               f"the pipeline; pass --token SECRET (or set {TOKEN_ENV}), or bind 127.0.0.1")
        from processors.web.server import WebServer

        WebServer(path, token=args.token, public_url=args.public_url)  # the pipeline's mistakes, once, before any worker
        argv = [str(path.resolve()), "--idle-timeout", str(args.idle_timeout), "--max-sessions", str(args.max_sessions),
                "--drain-timeout", str(args.drain_timeout)]
        argv += ["--max-cpu", str(args.max_cpu)] if args.max_cpu is not None else []
        argv += ["--otel"] if args.otel else []
        argv += ["--public-url", args.public_url] if args.public_url else []
        argv += ["--no-verify-signatures"] if args.no_verify_signatures else []
        argv += ["--log-format", args.log_format]
        for name in args.allow_host:
            argv += ["--allow-host", name]
        if args.token:
            os.environ["VOXPIPE_TOKEN"] = args.token  # to the workers by environment, not on their command lines
        return run_workers(workers, argv, host=args.host, port=args.port, drain_timeout_s=args.drain_timeout,
                           verbose=args.verbose)
    logging.getLogger("voxpipe.web").setLevel(min(logging.INFO, logging.WARNING - 10 * args.verbose))  # a line per session
    anyio.run(lambda: serve(path, host=args.host, port=args.port,
                            token=args.token, public_url=args.public_url,
                            verify_signatures=not args.no_verify_signatures, idle_timeout_s=args.idle_timeout,
                            max_sessions=args.max_sessions, max_cpu=args.max_cpu, drain_timeout_s=args.drain_timeout,
                            otel=args.otel, allow_hosts=tuple(args.allow_host), **_worker_of_supervisor()))
    return 0


class _JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (secrets still redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        out = {"t": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
               "message": record.message}
        if getattr(record, "session", ""):  # logs.SessionFilter: the session this line was logged for
            out["session"] = record.session
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _allow_host_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for Host NAME, e.g. a reverse proxy's public name (repeatable; "
                        "*.example.com: its subdomains; also $VOXPIPE_ALLOW_HOSTS, comma-separated); by default "
                        "only loopback names and --host")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxpipe", description="Streaming voice agents as graphs of frame processors.",
                                     formatter_class=_Help)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v for info, -vv for debug (default: warnings only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=description or text[:1].upper() + text[1:] + ".",
                              formatter_class=_Help)

    p = command("run", "run a pipeline")
    _add_load_args(p)
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of real time (default: real time)")
    p.add_argument("--stats", action="store_true", help="print per-processor latency and queue figures at the end")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print nothing while running, not even the pipeline's debug.console (default: a live view of "
                        "the conversation when a terminal is attached)")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="json: the live view's events and the log as one JSON object per line, terminal or not")
    p.set_defaults(fn=cmd_run)

    p = command("validate", "check a pipeline without running it")
    _add_load_args(p)
    p.set_defaults(fn=cmd_validate)

    p = command("graph", "print a pipeline as Mermaid (or DOT)")
    _add_load_args(p)
    p.add_argument("--format", choices=["mermaid", "dot"], default="mermaid", help="the diagram language")
    p.set_defaults(fn=cmd_graph)

    p = command("schema", "print the JSON Schema of pipeline files")
    p.set_defaults(fn=cmd_schema)

    p = command("processors", "list the registered processor types, or show one type's reference",
                "List the registered processor types (built-in, entry points of installed packages); "
                "with NAME, print that type's params (type, default, description), formats and an example.")
    p.add_argument("name", nargs="?", default=None, help="a type name, e.g. vad.energy (default: list every type)")
    p.add_argument("--markdown", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the reference of every built-in type as Markdown to FILE (docs/reference.md), "
                        "or to stdout without FILE")
    p.set_defaults(fn=cmd_processors)

    p = command("devices", "list sound devices (needs the 'audio' extra)")
    p.set_defaults(fn=cmd_devices)

    p = command("realtime-server", "serve the OpenAI Realtime API offline on 127.0.0.1")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8765, help="port to listen on")
    p.add_argument("--rules", default=None, help="responder rules YAML (default: the shipped demo rules)")
    p.add_argument("--model-delay-ms", type=int, default=0, help="artificial delay before the first audio of each response")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let browser pages from ORIGIN connect (repeatable; '*': any page); by default none may")
    _allow_host_option(p)
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="speech recognition worker processes (default: one per core; 0: in the server process)")
    p.set_defaults(fn=cmd_realtime_server)

    p = command("demo", "run the offline voice-agent demo")
    p.add_argument("--out", default="out", help="where to write the output WAV files")
    p.add_argument("--model", choices=("realtime", "live"), default="realtime",
                   help="the model API: realtime (realtime.openai) or live (live.openai, full duplex)")
    p.set_defaults(fn=cmd_demo)

    p = command("bench", "benchmark a pipeline of yours, or run voxpipe's own benchmarks",
                "With PIPELINE: run it and report per processor (frames, time in process(), share of the frame "
                "budget, queue high-water, drops) and, with a realtime model, per turn (speech end -> first audio, "
                "barge-in -> playback stopped); compare with --baseline and exit 1 past --tolerance. Without: "
                "run the benchmarks of a source checkout (benchmarks/) and print their summary.")
    p.add_argument("pipeline", nargs="?", default=None,
                   help="the pipeline YAML to measure (default: voxpipe's own benchmarks)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a param of PIPELINE, repeatable")
    p.add_argument("--fast", action="store_true", help="run PIPELINE as fast as the graph allows (default: real time)")
    p.add_argument("--runs", type=int, default=1, help="run PIPELINE this many times, each on a fresh copy")
    p.add_argument("--turns", type=int, default=None, help="end each run after this many model turns (default: the whole input)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="end each run after this many seconds (default: the whole input)")
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="compare with a report written earlier by --json; exit 1 when a figure is past --tolerance "
                        "(default: no comparison)")
    p.add_argument("--tolerance", type=float, default=1.5,
                   help="ratio to the baseline past which a figure fails (1.5: 50%% slower)")
    p.add_argument("--quick", action="store_true", help="fewer iterations (default: the full run)")
    p.add_argument("--json", default=None, help="write the figures to this JSON file, - for stdout (default: none written)")
    p.add_argument("--plot", default=None, help="write PNG plots to this directory (needs matplotlib; default: no plots)")
    p.add_argument("--only", action="append", default=None,
                   help="run only this benchmark, repeatable: hops, session_copy, dsp, turn, sessions (default: all)")
    p.set_defaults(fn=cmd_bench)

    p = command("serve", "serve a pipeline to browsers (page + websocket)")
    p.add_argument("pipeline", nargs="?", default=None, help="pipeline YAML (default: the shipped web_agent.yaml)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument("--token", default=None,
                   help="require this token in the websocket URL (default: $VOXPIPE_TOKEN, else no token)")
    p.add_argument("--public-url", default=None, help="phone calls: the https:// URL providers reach this server at "
                   "(default: the request's Host)")
    p.add_argument("--no-verify-signatures", action="store_true", help="phone calls: accept unsigned webhooks and "
                   "streams (local development only; logged as a warning)")
    p.add_argument("--idle-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="close a session whose page sends nothing for this long (0: never; default 120)")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="text: `LEVEL logger [session]: message`; json: one object per line with a `session` field "
                        "on a session's lines (default text)")
    _allow_host_option(p)
    _add_serving_args(p)
    p.set_defaults(fn=cmd_serve)
    return parser


def _worker_of_supervisor() -> dict:
    """A worker started by ``--workers N`` (processors/serving/workers.py): share the port, report it on a pipe."""
    import os

    fd = os.environ.pop("VOXPIPE_READY_FD", None)
    if fd is None:
        return {}
    return {"reuse_port": True, "ready_fd": int(fd)}


def _add_serving_args(p: argparse.ArgumentParser) -> None:
    """``voxpipe serve``'s options for serving at scale (docs/serving.md)."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes sharing the port (SO_REUSEPORT); a crash loses only that worker's "
                        "sessions (default: one per core)")
    p.add_argument("--max-sessions", type=int, default=16, metavar="N",
                   help="sessions per worker; past it a page is refused (1013, with the reason) and /readyz is 503")
    p.add_argument("--max-cpu", type=float, default=None, metavar="SHARE",
                   help="refuse new sessions while the worker uses more than this share of one core (0.9 = 90%%; "
                        "default: no CPU limit)")
    p.add_argument("--drain-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="after SIGTERM or POST /drain, how long live sessions may go on before they are closed")
    p.add_argument("--otel", action="store_true",
                   help="OpenTelemetry traces: a trace per session, a span per turn; the OTLP exporter reads the "
                        "OTEL_* environment variables (default: off, and nothing of OpenTelemetry is loaded)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    level = logging.WARNING - 10 * args.verbose
    handler = logging.StreamHandler()
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s%(session_tag)s: %(message)s"))
    # a no-op when the host (pytest, an application) configured logging already: its handlers stay as they are
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])
    from .errors import PipelineError, VoxpipeError
    from .logs import install, redact

    install()  # no key or token in any log line, whatever logger writes it
    try:
        return args.fn(args)
    except PipelineError as exc:  # already `file:line: message` lines
        print(redact(str(exc)), file=sys.stderr)
        return 2
    except VoxpipeError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voxpipe ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
