"""The progress callback every long-running library function takes.

Library code never prints; it calls ``progress(label, done, total)`` and the CLI draws the bar.
"""

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
