"""Phone sets, corpus readers (TIMIT and the synthesized corpus), manifests and batching."""
