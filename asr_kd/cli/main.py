"""Entry point of the ``asr-kd`` console script."""

from __future__ import annotations

import errno
import logging
import os
import shlex
import signal
import sys
import threading
import traceback
from typing import Any

import click

from asr_kd import __version__
from asr_kd.checked import set_command
from asr_kd.cli import align as align_cmds
from asr_kd.cli import data as data_cmds
from asr_kd.cli import decode as decode_cmds
from asr_kd.cli import distill as distill_cmds
from asr_kd.cli import ensemble as ensemble_cmds
from asr_kd.cli import graph as graph_cmds
from asr_kd.cli import lang as lang_cmds
from asr_kd.cli import protocol as protocol_cmds
from asr_kd.cli import scoring as scoring_cmds
from asr_kd.cli import specialists as specialists_cmds
from asr_kd.cli import train as train_cmds
from asr_kd.cli import transfer as transfer_cmds
from asr_kd.cli import tree as tree_cmds
from asr_kd.errors import AsrKdError
from asr_kd.stage import reset_inputs, set_command_line

logger = logging.getLogger("asr_kd")


DEBUG_ENV = "ASR_KD_DEBUG"


class _Cli(click.Group):
    """Turns every error into one line and exit status 1 (the traceback under --debug).

    The toolkit's own errors (:class:`AsrKdError`) say what is wrong and what to do;
    anything else escaped a library and is reported with its type, as a probable bug.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        set_command_line(["asr-kd", *args])  # recorded in the stage's marker
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        set_command(name)  # checked opens name the reading stage
        return name, cmd, rest

    def invoke(self, ctx: click.Context):
        reset_inputs()  # one command, one stage: nothing recorded before it is its input
        previous = _on_sigterm(_terminate)
        previous_hook, threading.excepthook = threading.excepthook, _thread_failed
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as e:  # the stage's temporary output is gone by now
            name = ctx.invoked_subcommand or "asr-kd"
            how, status = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
            click.echo(f"asr-kd {name}: {how}", err=True)
            sys.exit(status)
        except Exception as e:
            name = ctx.invoked_subcommand or "asr-kd"
            if _debug(ctx):
                traceback.print_exc()
            lines = _original_lines(str(e))
            if isinstance(e, AsrKdError):
                message = "\n".join(lines)
            elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                where = f" writing {e.filename}" if e.filename else ""
                message = (
                    f"no space left on the device{where} ({e.strerror}): free some on the "
                    "output's disk and rerun the same command (its temporary output is gone; a "
                    "training resumes from its last epoch's checkpoint)"
                )
            else:
                message = (
                    f"unexpected {type(e).__name__}: {lines[0]} (a bug, or a damaged input this "
                    "check does not know; rerun with --debug for the traceback and report it)"
                )
            _log_to_files(f"asr-kd {name}: error: {message}", e)
            click.echo(f"asr-kd {name}: error: {message}", err=True)
            sys.exit(1)
        finally:
            set_command_line(None)  # a later library call in this process is no command
            _on_sigterm(previous)
            threading.excepthook = previous_hook


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A library's background thread (tensorboard's event writer, a prefetcher) that
    fails: one line, its traceback into the --log-file. The command itself fails when it
    next uses that thread's work (tensorboard raises the thread's error to its caller)."""
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    message = (
        f"asr-kd: background thread {name} failed: {args.exc_type.__name__}: "
        f"{_original_lines(str(args.exc_value))[0]}"
    )
    _log_to_files(message, args.exc_value)
    click.echo(message, err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit): unwinds like Ctrl-C, so that a
    stage removes its temporary output and lock instead of leaving them to the next run."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (main thread only); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _original_lines(text: str) -> list[str]:
    """An error's message lines; for one re-raised by a DataLoader worker ("Caught
    ValueError in DataLoader worker process 0. Original Traceback ..."), the original
    error's own message, not the worker's traceback."""
    lines = text.strip().splitlines() or [""]
    if lines[0].startswith("Caught ") and any(x.startswith("Original Traceback") for x in lines):
        last = next((x for x in reversed(lines) if x.strip()), "")
        _, _, original = last.partition(": ")
        return [original or last]
    return lines


def _log_to_files(message: str, e: BaseException) -> None:
    """The error and its traceback into the --log-file (the terminal gets one line)."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (),
                               (type(e), e, e.__traceback__))  # fmt: skip
    if _file_handler is not None:
        _file_handler.handle(record)


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.params or {}).get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_file_handler: logging.FileHandler | None = None


def setup_logging(level: str, log_file: str | None) -> None:
    """The console handler (once per process) and this command's --log-file."""
    global _file_handler
    root = logging.getLogger()
    logging.basicConfig(level=getattr(logging, level.upper()), format=_FORMAT)
    root.setLevel(getattr(logging, level.upper()))
    if _file_handler is not None:  # an earlier command in this process (tests, notebooks)
        root.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None
    if log_file:
        _file_handler = logging.FileHandler(log_file)
        _file_handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(_file_handler)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asr-kd")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
@click.option("--log-file", default=None, help="Also append the log to this file.")
@click.option(
    "--debug",
    is_flag=True,
    help=f"Show an error's traceback (also: {DEBUG_ENV}=1), for bug reports.",
)
def cli(log_level: str, log_file: str | None, debug: bool) -> None:
    """asr-kd: distil ensembles of hybrid DNN-HMM acoustic models (Hinton et al., 2015)."""
    setup_logging(log_level, log_file)
    logger.info("command: %s", shlex.join(["asr-kd", *sys.argv[1:]]))


cli.add_command(data_cmds.synth_corpus)
cli.add_command(data_cmds.prepare)
cli.add_command(data_cmds.download)
cli.add_command(data_cmds.compute_features)
cli.add_command(lang_cmds.prepare_lang)
cli.add_command(lang_cmds.train_lm)
cli.add_command(lang_cmds.import_lm)
cli.add_command(align_cmds.train_mono)
cli.add_command(align_cmds.train_tri)
cli.add_command(align_cmds.estimate_lda)
cli.add_command(align_cmds.align)
cli.add_command(tree_cmds.build_tree)
cli.add_command(tree_cmds.senone_targets)
cli.add_command(graph_cmds.make_graph)
cli.add_command(decode_cmds.decode)
cli.add_command(decode_cmds.adjust_priors)
cli.add_command(scoring_cmds.compare_wer)
cli.add_command(protocol_cmds.protocol)
cli.add_command(train_cmds.train)
cli.add_command(train_cmds.eval_frame_acc)
cli.add_command(ensemble_cmds.train_ensemble)
cli.add_command(ensemble_cmds.eval_ensemble)
cli.add_command(distill_cmds.cache_soft_targets)
cli.add_command(distill_cmds.distill)
cli.add_command(specialists_cmds.train_specialists)
cli.add_command(specialists_cmds.eval_specialists)
cli.add_command(distill_cmds.report)
cli.add_command(transfer_cmds.transfer_config)
cli.add_command(transfer_cmds.synth_unlabelled)
cli.add_command(transfer_cmds.unlabelled_set)
cli.add_command(transfer_cmds.eval_omitted_phone)
