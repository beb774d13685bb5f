"""VSS: label marine imagery by vector similarity search.

Run with ``streamlit run app.py``.  This file is only the router and the sidebar;
the pages live in ``pages/`` and the engine in ``vss_core``.
"""

import streamlit as st

from ui import sidebar
from ui.thumbs import favicon

st.set_page_config(page_title="VSS", page_icon=favicon(), layout="wide")

page = st.navigation([
    st.Page("pages/search.py", title="Search", icon=":material/image_search:", default=True),
    st.Page("pages/review.py", title="Review", icon=":material/fact_check:"),
    st.Page("pages/rare.py", title="Rare events", icon=":material/star:"),
    st.Page("pages/anomalies.py", title="Anomalies", icon=":material/warning:"),
    st.Page("pages/map.py", title="Embedding map", icon=":material/scatter_plot:"),
    st.Page("pages/exemplars.py", title="Exemplars", icon=":material/library_add:"),
    st.Page("pages/audit.py", title="Exemplar audit", icon=":material/rule:"),
])
sidebar.render()
page.run()
