"""Progress for long work, shaped by where the output goes.

A tqdm bar redraws itself with carriage returns: in a terminal that is one moving line, in a log file
(``make demo > demo.log 2>&1``, CI, a subprocess pipe) it is tens of thousands of frames. Every long loop in
lanfer therefore asks :func:`progress_bar` for its bar, which is a tqdm bar when stdout and stderr are both
terminals (or inside a Jupyter kernel, where tqdm draws a widget), and otherwise a :class:`QuietBar` that draws
nothing and, when it closes, prints one line: ``extracting F_o: 1,400 img in 12.3 s (113.8 img/s)``.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator


def _isatty(stream: Any) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or too broken to ask: draw no bars
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def interactive() -> bool:
    """True when a bar can redraw in place: stdout and stderr are terminals, or this is a Jupyter kernel.

    Both streams count: the bar draws on stderr, the log lines go to stdout, and when either is captured a
    person reads a file, where a redrawn bar is noise.
    """
    return (_isatty(sys.stdout) and _isatty(sys.stderr)) or _in_notebook()


class QuietBar:
    """tqdm's interface without drawing: counts, and on :meth:`close` prints one summary line to stdout.

    ``summary=False`` (a transient bar, tqdm's ``leave=False``, whose caller prints its own line per epoch)
    prints nothing at all.
    """

    disable = True  # tqdm's attribute: callers skip work done only for the display (e.g. set_postfix values)

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 unit: str = "it", summary: bool = True):
        self.iterable, self.desc, self.unit, self.summary = iterable, desc, unit, summary
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total
        self.n = 0
        self.start = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        # `is None`, not truthiness: a numpy array (or a tensor) has no single truth value
        for item in (() if self.iterable is None else self.iterable):
            yield item
            self.n += 1
        self.close()  # as tqdm does when its iterable is exhausted

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "QuietBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    # The summary names the stage the bar was opened for, not the last item it described (predict relabels
    # its bar with each file's name).
    def set_description(self, *args, **kwargs) -> None:
        pass

    def set_description_str(self, *args, **kwargs) -> None:
        pass

    def refresh(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.summary:
            return
        dt = time.perf_counter() - self.start
        n = int(self.n) if float(self.n).is_integer() else self.n
        rate = f" ({self.n / dt:.1f} {self.unit}/s)" if dt > 0 and self.n else ""
        print(f"{self.desc or 'done'}: {n:,} {self.unit} in {dt:.1f} s{rate}", flush=True)


def progress_bar(iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 unit: str = "it", enabled: bool = True, leave: bool = True, **tqdm_kwargs: Any):
    """A progress bar over ``iterable`` (or updated by hand with ``.update(n)``), as the output allows.

    Args:
        enabled: False for no progress at all (``--no-progress``, ranks other than 0): a silent counter.
        leave: as tqdm's. A transient bar (``leave=False``) prints no summary line when the output is not a
            terminal, because its caller prints one line per epoch itself.
        tqdm_kwargs: passed to tqdm when a bar is drawn (``dynamic_ncols``, ``unit_scale`` ...).
    Returns:
        a ``tqdm.auto.tqdm`` in a terminal or notebook, else a :class:`QuietBar`; both iterate, ``update``,
        ``set_postfix`` and ``close``.
    """
    if not enabled:
        return QuietBar(iterable, desc, total, unit, summary=False)
    if not interactive():
        return QuietBar(iterable, desc, total, unit, summary=leave)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, **tqdm_kwargs)
