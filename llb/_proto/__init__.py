"""Generated protobuf code for the BuildKit wire protocol (v0.8 field numbers, and what later versions add)."""
