"""Pure-Python analysis package for session-by-session alliance and symptom data.

No module in this package imports streamlit. Every model is defined in
``METHODS.md`` (shipped beside the project as ``../shared/METHODS.md`` and
summarised in ``docs/METHODS.md``); public functions name the section they
implement.
"""

__version__ = "0.1.0"
