"""Streamlit glue: cached shared resources and the widgets pages are made of.

``ui.resources`` holds the ``st.cache_resource`` factories (shared by every
session of the server); the other modules render parts of pages.  Nothing here
starts a thread: background work goes through :class:`vss_core.jobs.registry.JobRegistry`.
"""
