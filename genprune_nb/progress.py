"""Progress bars: text in a terminal, an ipywidgets bar in Jupyter (``tqdm.auto``).

In Jupyter a bar's output also stores a plain-text copy, which is what a reader of an executed notebook sees where
the widget is not restored (JupyterLab by default, GitHub, nbviewer). tqdm writes that copy once, when the bar
appears (``0%``); here the bar is displayed under a display id and its output is updated when the bar closes, so the
stored text is the bar's final state (``100% 234/234 [00:01, 190doc/s]``) and the widget keeps its final state.
"""
from __future__ import annotations

from tqdm.auto import tqdm as _auto_tqdm

try:  # the widget bar; absent without ipywidgets / IPython
    from tqdm.notebook import tqdm as _notebook_tqdm
except ImportError:  # pragma: no cover - ipywidgets is a dependency
    _notebook_tqdm = None

if _notebook_tqdm is not None and issubclass(_auto_tqdm, _notebook_tqdm):

    class tqdm(_auto_tqdm):  # noqa: N801 - the name every caller knows
        """``tqdm.auto.tqdm`` whose notebook output is rewritten with the final state when the bar closes."""

        def __init__(self, *args, **kwargs):
            own_display = kwargs.get("display", True) and kwargs.get("delay", 0) <= 0
            if own_display:
                kwargs["display"] = False
            super().__init__(*args, **kwargs)
            self._handle = None
            if own_display and not self.disable:
                from IPython.display import display

                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def close(self):
            super().close()
            handle, self._handle = getattr(self, "_handle", None), None
            if handle is not None and self.leave:  # a bar that leaves no trace is not rewritten
                handle.update(self.container)

else:
    tqdm = _auto_tqdm

__all__ = ["tqdm"]
