"""LakeRAG: make a data lake answerable."""
