"""`%session` and `%%agent`: sessions from notebook cells (`%load_ext jupyter_sessions`).

    %session new [--model M] [--temperature T] [--max-tokens N] [--timeout S] [--repo URL[@branch]]...
                 [--workflow NAME] [--name TEXT] [--thinking TOKENS] [--inactivity-timeout S]
    %session list | models
    %session use ID
    %session stop|resume|clone|delete ID
    %session export ID [--format markdown|pdf|ipynb|json] [--output PATH]
    %session rename ID TEXT
    %session connect [URL] [--token TOKEN]
    %%agent [ID] [--wait]          the cell is the message; shows the live chat widget

Every command talks to the server's REST API through `jupyter_sessions.client`. Bad arguments and
API errors print one line (never a traceback); `--help` works on each command.
"""

from __future__ import annotations

import argparse
import html
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import display, update_display

from .client import EXPORT_FORMATS, SessionsClient, SessionsError, parse_repo


class _Help(Exception):
    """--help was printed; stop quietly."""


class _Usage(Exception):
    """Bad arguments; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message, file=sys.stderr, end="")
        raise _Help()

    def print_help(self, file=None) -> None:  # type: ignore[override]
        print(self.format_help(), end="")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s} must not be negative")
    return v


def _number(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None


def _parsers() -> dict[str, _Parser]:
    p: dict[str, _Parser] = {}

    new = p["new"] = _Parser(prog="%session new", description="Create a session and make it the current one.")
    new.add_argument("--model", help="model id (see %%session models); default: the server's default")
    new.add_argument("--temperature", type=_number, help="0-2 (Claude: 0-1); default 0.7")
    new.add_argument("--max-tokens", type=_positive_int, help="maximum output tokens per response; default 4000")
    new.add_argument("--timeout", type=_positive_int, help="hard limit on the agent's working time in seconds; 0 = none; default 300")
    new.add_argument("--inactivity-timeout", type=_positive_int, help="idle seconds before auto-stop; 0 = never")
    new.add_argument("--thinking", type=_positive_int, metavar="TOKENS", help="extended thinking budget in tokens (Claude: temperature 1)")
    new.add_argument("--repo", action="append", default=[], metavar="URL[@branch]", help="git repository to clone (repeatable)")
    new.add_argument("--workflow", metavar="NAME", help="workflow to attach (built-in name or a git repo/dir)")
    new.add_argument("--name", metavar="TEXT", help="display name (default: generated from the first message)")
    new.add_argument("--no-widget", action="store_true", help="do not show the chat widget")

    p["list"] = _Parser(prog="%session list", description="Your sessions, with phase and agent state.")
    p["models"] = _Parser(prog="%session models", description="Models your workspace may use.")

    use = p["use"] = _Parser(prog="%session use", description="Make ID the current session and show its whole history.")
    use.add_argument("id", help="session id (a unique prefix or the display name also works)")

    for name, what in (("stop", "Gracefully halt the agent; resume later."),
                       ("resume", "Continue a stopped session from where it left off."),
                       ("clone", "New session with the same settings and repos (no chat history); becomes current."),
                       ("delete", "Permanently remove the session, its sandbox and its data.")):
        sp = p[name] = _Parser(prog=f"%session {name}", description=what)
        sp.add_argument("id", nargs="?" if name != "delete" else None, help="session id (default: the current session)"
                        if name != "delete" else "session id")

    ex = p["export"] = _Parser(prog="%session export", description="Download the session as Markdown, PDF, notebook or JSON.")
    ex.add_argument("id", nargs="?", help="session id (default: the current session)")
    ex.add_argument("--format", "-f", choices=list(EXPORT_FORMATS), default="markdown")
    ex.add_argument("--output", "-o", metavar="PATH", help="file to write (default: a name from the session)")

    rn = p["rename"] = _Parser(prog="%session rename", description="Change a session's display name.")
    rn.add_argument("id")
    rn.add_argument("name", nargs="+")

    cn = p["connect"] = _Parser(prog="%session connect",
                                description="Talk to a given server (default: the one that started this kernel).")
    cn.add_argument("url", nargs="?", help="server URL including its base URL, e.g. http://127.0.0.1:8888/user/me/")
    cn.add_argument("--token", help="the server's token")
    return p


AGENT = _Parser(prog="%%agent", description="Send the cell as a message to a session and show the live chat.")
AGENT.add_argument("id", nargs="?", help="session id (default: the current session)")
AGENT.add_argument("--wait", action="store_true",
                   help="block until the agent finishes its turn (or asks); useful for Run All and nbconvert")
AGENT.add_argument("--timeout", type=_number, default=None, help="with --wait: give up waiting after this many seconds")

SUBCOMMANDS = ["new", "list", "use", "models", "stop", "resume", "clone", "delete", "export", "rename", "connect"]
SESSION_HELP = """%session COMMAND ...  (each command has --help)

  new [--model M --temperature T --max-tokens N --timeout S --repo URL[@branch] --workflow NAME --name TEXT]
  list                     your sessions
  models                   models you may use
  use ID                   make ID current and show its whole history
  stop|resume|clone ID     operations (ID defaults to the current session)
  delete ID                remove a session for good
  export ID [-f markdown|pdf|ipynb|json] [-o PATH]
  rename ID TEXT
  connect [URL] [--token]  talk to another server

%%agent [ID] [--wait]      the cell body is a message; shows the live chat widget
"""


class Table:
    """A small table that shows as HTML in notebooks and as text elsewhere; `.rows` has the data."""

    def __init__(self, columns: list[str], rows: list[list[Any]], empty: str = "(none)"):
        self.columns, self.rows, self.empty = columns, rows, empty

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return self.empty
        cells = [self.columns] + [["" if c is None else str(c) for c in r] for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape('' if c is None else str(c))}</td>"
                                        for c in r) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_markdown_(self) -> str:
        if not self.rows:
            return self.empty
        esc = lambda c: ("" if c is None else str(c)).replace("|", "\\|")  # noqa: E731
        out = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        return "\n".join(out)


@magics_class
class SessionMagics(Magics):
    """The %session line magic and the %%agent cell magic."""

    def __init__(self, shell=None, client: SessionsClient | None = None):
        super().__init__(shell)
        self._client = client
        self.current: str | None = None
        self.last_widget = None
        self._parsers = _parsers()

    @property
    def client(self) -> SessionsClient:
        if self._client is None:
            self._client = SessionsClient()
        return self._client

    @client.setter
    def client(self, value: SessionsClient | None) -> None:
        self._client = value

    # --- plumbing -----------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        print(str(message).splitlines()[0] if message else "error", file=sys.stderr)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except _Help:
            return None
        except _Usage as e:
            self._fail(f"UsageError: {e}")
        except SessionsError as e:
            self._fail(f"Error: {e}")
        except KeyboardInterrupt:
            self._fail("interrupted")
        return None

    def _split(self, line: str) -> list[str]:
        try:
            return shlex.split(line)
        except ValueError as e:
            raise _Usage(f"cannot parse the arguments: {e}") from None

    def _sid(self, ref: str | None) -> str:
        if ref:
            return self.client.resolve(ref)["id"]
        if not self.current:
            raise _Usage("no current session: run %session new, or %session use ID")
        return self.current

    @staticmethod
    def _widget_class():
        try:
            from .widgets.chat import ChatWidget
        except ImportError as e:
            raise _Usage(f"the chat widget needs ipywidgets and anywidget ({e}): "
                         "pip install 'jupyter-sessions[lab]', or use --no-widget") from None
        return ChatWidget

    def _widget(self, sid: str, start_seq: int = 0, session: dict | None = None):
        w = self._widget_class()(sid, client=self.client, start_seq=start_seq, session=session)
        self.last_widget = w
        return w

    # --- %session -----------------------------------------------------------------------------
    @line_magic
    def session(self, line: str = ""):
        """Manage agent sessions: %session new|list|use|models|stop|resume|clone|delete|export ID (--help)."""
        return self._guard(self._session, line)

    def _session(self, line: str):
        argv = self._split(line)
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(SESSION_HELP, end="")
            if self.current:
                print(f"\ncurrent session: {self.current}")
            return None
        cmd, rest = argv[0], argv[1:]
        if cmd not in self._parsers:
            close = [c for c in SUBCOMMANDS if c.startswith(cmd[:2])]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Usage(f"%session: unknown command {cmd!r}{hint}; one of {', '.join(SUBCOMMANDS)}")
        args = self._parsers[cmd].parse_args(rest)
        return getattr(self, f"_cmd_{cmd}")(args)

    def _cmd_new(self, a) -> None:
        spec: dict[str, Any] = {}
        for key, value in (("model", a.model), ("temperature", a.temperature), ("max_tokens", a.max_tokens),
                           ("timeout", a.timeout), ("inactivity_timeout", a.inactivity_timeout),
                           ("workflow", a.workflow), ("display_name", a.name)):
            if value is not None:
                spec[key] = value
        if a.thinking is not None:
            spec["thinking"] = {"budget_tokens": a.thinking}
        if a.repo:
            spec["repos"] = [parse_repo(r) for r in a.repo]
        if not a.no_widget:
            self._widget_class()
        s = self.client.create(spec)
        self.current = s["id"]
        print(f"Created session {s['id']} ({s['display_name']}) · {s['spec']['model']} · {s['phase']}; "
              f"it is now the current session")
        if not a.no_widget:
            display(self._widget(s["id"], session=s))

    def _cmd_list(self, a) -> Table:
        rows = []
        for s in self.client.sessions():
            rows.append(["*" if s["id"] == self.current else "", s["id"], s["display_name"], s["spec"]["model"],
                         s["phase"], s.get("agent_state") or "", str(s["created"])[:19].replace("T", " ")])
        return Table(["", "id", "name", "model", "phase", "agent", "created"], rows,
                     empty="no sessions yet: %session new")

    def _cmd_models(self, a) -> Table:
        data = self.client.models()
        rows = [[m["id"], m["label"], m["provider"], "yes" if m.get("default") else "",
                 m["max_temperature"], m["max_output_tokens"], "on" if m.get("thinking_default") else "off"]
                for m in data["models"]]
        return Table(["id", "label", "provider", "default", "max temperature", "max output tokens", "thinking"], rows)

    def _cmd_use(self, a) -> None:
        s = self.client.resolve(a.id)
        self.current = s["id"]
        display(self._widget(s["id"], session=s))

    def _cmd_stop(self, a) -> None:
        sid = self._sid(a.id)
        s = self.client.stop(sid)
        print(f"Stop requested for {sid} (now {s['phase']}); the agent finishes its current step")

    def _cmd_resume(self, a) -> None:
        sid = self._sid(a.id)
        s = self.client.resume(sid)
        print(f"Resume requested for {sid} (now {s['phase']})")

    def _cmd_clone(self, a) -> None:
        sid = self._sid(a.id)
        s = self.client.clone(sid)
        self.current = s["id"]
        print(f"Cloned {sid} into {s['id']} ({s['display_name']}) · {s['phase']}; it is now the current session")

    def _cmd_delete(self, a) -> None:
        sid = self._sid(a.id)
        self.client.delete(sid)
        if self.current == sid:
            self.current = None
        print(f"Deleted {sid}")

    def _cmd_export(self, a) -> None:
        sid = self._sid(a.id)
        dl = self.client.export(sid, a.format)
        ext = EXPORT_FORMATS[a.format]
        path = Path(a.output) if a.output else Path(dl.filename or f"{sid}.{ext}")
        if path.is_dir():
            path = path / (dl.filename or f"{sid}.{ext}")
        path.write_bytes(dl.data)
        print(f"Exported {sid} as {a.format} to {path} ({len(dl.data)} bytes)")

    def _cmd_rename(self, a) -> None:
        sid = self._sid(a.id)
        s = self.client.rename(sid, " ".join(a.name))
        print(f"Renamed {sid} to {s['display_name']!r}")

    def _cmd_connect(self, a) -> None:
        c = SessionsClient(a.url, a.token)
        c.models()  # fail now, with a clear line, if it does not answer
        self._client = c
        print(f"Connected to {c.url}")

    # --- %%agent ------------------------------------------------------------------------------
    @cell_magic
    def agent(self, line: str = "", cell: str = ""):
        """Send the cell to a session as a message and show the live chat: %%agent [ID] [--wait] (--help)."""
        return self._guard(self._agent, line, cell)

    def _agent(self, line: str, cell: str) -> None:
        a = AGENT.parse_args(self._split(line))
        text = (cell or "").strip()
        if not text:
            raise _Usage("%%agent: the cell is empty; write your message below the %%agent line")
        self._widget_class()  # before sending: a missing widget stack is a one-line error, not a lost reply
        sid = self._sid(a.id)
        self.current = sid
        info = self.client.session(sid)
        start = int(info.get("last_seq") or 0)
        accepted = self.client.send(sid, text)
        widget = self._widget(sid, start_seq=start, session=info)
        display_id = "jupyter-sessions-" + uuid.uuid4().hex
        display(widget, display_id=display_id)
        if a.wait:
            try:
                done = widget.wait(accepted.get("message_id"), timeout=a.timeout)
            except KeyboardInterrupt:
                done = False
            update_display(widget, display_id=display_id)  # the snapshot now holds the whole turn
            if not done:
                self._fail("stopped waiting; the agent goes on and the widget keeps updating")


def load_ipython_extension(ipython) -> None:  # for `%load_ext jupyter_sessions.magics`
    ipython.register_magics(SessionMagics)


__all__ = ["SessionMagics", "Table", "load_ipython_extension"]
