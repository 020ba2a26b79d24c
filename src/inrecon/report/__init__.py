"""Reports people read: one self-contained HTML file (plus its PNGs), Markdown and JSON.

See :class:`~inrecon.report.core.Report` for the API.
"""

from .core import *  # noqa: F403
from .core import __all__  # noqa: F401
