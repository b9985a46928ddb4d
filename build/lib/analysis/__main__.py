"""``python -m analysis``: print the package version (and where it is installed)."""

from pathlib import Path

import analysis

print(f"alliance-dashboard analysis package {analysis.__version__} ({Path(analysis.__file__).parent})")
