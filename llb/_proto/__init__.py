"""Generated protobuf code for the BuildKit v0.8 wire protocol."""
