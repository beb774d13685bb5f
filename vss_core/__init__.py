"""VSS engine: config, embedded Redis, vector store, ViT embedder, loading, search, jobs.

Never imports streamlit; torch is imported lazily by the embedder.
"""
