"""VSS: label marine imagery by vector similarity search.

Run with ``streamlit run app.py``.  This is Streamlit's ``pages/`` multipage app: this file is the
home page ("/", which shows the Search page), every file in ``pages/`` is a page whose URL is its
file name (``/review``, ``/rare``, ...), and every page starts with ``ui.sidebar.frame()`` (page
settings, navigation, sidebar).  The engine is ``vss_core``.
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("pages") / "search.py"))
