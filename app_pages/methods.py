"""Methods page: the exact model definitions (docs/METHODS.md), so option help can link here."""

from pathlib import Path

import streamlit as st

from ui.methods_text import for_readers
from ui.safe import Markup
from ui.state import current

current()

st.title("Methods")
st.caption("What every number in this app is, with the references to cite. Option help on the other pages links here.")
text = (Path(__file__).resolve().parents[1] / "docs" / "METHODS.md").read_text(encoding="utf-8")
# The file's own first heading is replaced by the page title above.
text = text.split("\n", 1)[1] if text.startswith("# ") else text
st.markdown(Markup(for_readers(text)))  # the project's own docs, without the developers' pointers
