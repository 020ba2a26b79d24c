"""Reports people read: one self-contained HTML file (plus its PNGs), Markdown and JSON.

See :class:`~inrecon.report.core.Report` for the API.
"""

from inrecon.report.core import *  # noqa: F403
from inrecon.report.core import __all__  # noqa: F401
