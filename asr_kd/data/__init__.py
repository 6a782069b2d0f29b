"""Corpora, Lhotse manifests and features."""
